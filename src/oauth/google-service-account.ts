import { z } from 'zod';
import { type PrivateKeyInput, parsePrivateKey, pkcs8Pem } from '../crypto/signing-key.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { type ProviderProfile, resolveProvider } from './providers.js';
import { assertSecureEndpoint } from './token-client.js';

/** The fields of a Google service-account JSON key file that grantkeeper uses (the rest is ignored). */
const serviceAccountKeySchema = z.object({
  type: z.literal('service_account'),
  client_email: z.email(),
  private_key: z.string().min(1),
  private_key_id: z.string().regex(/^[\x21-\x7e]{1,256}$/),
  token_uri: z.string(),
});

export interface ServiceAccount {
  clientEmail: string;
  privateKey: PrivateKeyInput;
  profile: ProviderProfile;
}

/**
 * Reads a service account's JSON key file (IAM → Service accounts → Keys → Add key → JSON): its
 * email is the client id and the assertion's `iss`, its private key signs each JWT-bearer request
 * (RS256, `kid` the key's id), its `token_uri` is the audience and endpoint. `what` names the file
 * in errors; no value of it appears in one.
 */
export async function parseServiceAccountKey(text: string, what: string): Promise<ServiceAccount> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new GrantkeeperError('bad_key_file', `${what} is not a service-account JSON key file (not JSON)`);
  }
  const parsed = serviceAccountKeySchema.safeParse(json);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || 'the file'))].join(', ');
    throw new GrantkeeperError(
      'bad_key_file',
      `${what} is not a service-account JSON key file (check ${fields})`,
    );
  }
  const key = parsed.data;
  const { key: privateKey } = parsePrivateKey(key.private_key, `the private_key of ${what}`, 'RS256');
  let tokenEndpoint: string;
  try {
    tokenEndpoint = assertSecureEndpoint(key.token_uri, `the token_uri of ${what}`).href;
  } catch (err) {
    throw new GrantkeeperError('bad_key_file', (err as Error).message);
  }
  const google = await resolveProvider({ kind: 'google' });
  return {
    clientEmail: key.client_email,
    privateKey: {
      pem: pkcs8Pem(privateKey),
      alg: 'RS256',
      keyId: key.private_key_id,
      audience: 'token_endpoint',
    },
    profile: {
      ...google,
      tokenEndpoint,
      // Tokens for the service account: no user scopes, no consent, no refresh token.
      defaultScopes: [],
      scopeInAssertion: true,
    },
  };
}
