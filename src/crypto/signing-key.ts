import { createHash, createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';

/** The JWS algorithms grantkeeper signs assertions with (RFC 7518 §3): what Microsoft, Google and OIDC servers take. */
export const SIGNING_ALGS = ['RS256', 'PS256', 'ES256'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** Where an assertion's `aud` points: the token endpoint it is sent to (OIDC Core §9), or the issuer. */
export const ASSERTION_AUDIENCES = ['token_endpoint', 'issuer'] as const;
export type AssertionAudience = (typeof ASSERTION_AUDIENCES)[number];

/** The public facts about a client's signing key: stored in clear beside the sealed key, shown by `client show`. */
export const signingKeyInfoSchema = z.object({
  alg: z.enum(SIGNING_ALGS),
  keyId: z.string().optional(),
  /** Base64url SHA-256 of the certificate's DER: the `x5t#S256` header Microsoft matches certificates by. */
  x5tS256: z.string().optional(),
  audience: z.enum(ASSERTION_AUDIENCES),
});
export type SigningKeyInfo = z.infer<typeof signingKeyInfoSchema>;

/** A private key ready to be sealed: normalised PKCS#8 PEM and what it signs with. */
export interface PrivateKeyInput extends SigningKeyInfo {
  pem: string;
}

const MIN_RSA_BITS = 2048;

/**
 * Parses a PEM private key (PKCS#8, PKCS#1 or SEC1) and checks it against the algorithm asked for,
 * or picks the algorithm its type implies: RS256 for RSA, ES256 for P-256. `what` names the key in
 * errors (a file path); the key itself never appears in one.
 */
export function parsePrivateKey(
  text: string,
  what: string,
  alg?: SigningAlg,
): { key: KeyObject; alg: SigningAlg } {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new GrantkeeperError(
      'bad_key_file',
      `${what} is not a PEM private key (expected a -----BEGIN PRIVATE KEY----- block)`,
    );
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) {
    throw new GrantkeeperError(
      'bad_key_file',
      `${what} is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw new GrantkeeperError(
      'bad_key_file',
      `${what} holds a PEM block that is not a readable private key`,
    );
  }
  return { key, alg: checkAlg(key, what, alg) };
}

function checkAlg(key: KeyObject, what: string, alg: SigningAlg | undefined): SigningAlg {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss') {
    if ((details.modulusLength ?? 0) < MIN_RSA_BITS) {
      throw new GrantkeeperError(
        'bad_key_file',
        `${what} is an RSA key under ${MIN_RSA_BITS} bits: servers refuse it`,
      );
    }
    const chosen = alg ?? (type === 'rsa-pss' ? 'PS256' : 'RS256');
    if (chosen === 'ES256' || (type === 'rsa-pss' && chosen !== 'PS256')) {
      throw new GrantkeeperError(
        'bad_key_file',
        `--alg ${chosen} does not match ${what}, an ${type.toUpperCase()} key (use RS256 or PS256)`,
      );
    }
    return chosen;
  }
  if (type === 'ec') {
    if (details.namedCurve !== 'prime256v1') {
      throw new GrantkeeperError(
        'bad_key_file',
        `${what} is an EC key on ${details.namedCurve ?? 'an unknown curve'}; ES256 needs P-256`,
      );
    }
    const chosen = alg ?? 'ES256';
    if (chosen !== 'ES256')
      throw new GrantkeeperError(
        'bad_key_file',
        `--alg ${chosen} does not match ${what}, a P-256 key (use ES256)`,
      );
    return chosen;
  }
  throw new GrantkeeperError(
    'bad_key_file',
    `${what} is a ${type ?? 'non-asymmetric'} key; grantkeeper signs with RSA or P-256 keys`,
  );
}

/**
 * The certificate's `x5t#S256` thumbprint (RFC 7515 §4.1.8), after checking that it certifies this
 * private key: a certificate of another key would make every assertion fail as `invalid_client`.
 */
export function certificateThumbprint(certPem: string, key: KeyObject, what: string): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw new GrantkeeperError(
      'bad_key_file',
      `${what} is not a PEM certificate (expected a -----BEGIN CERTIFICATE----- block)`,
    );
  }
  if (!cert.checkPrivateKey(key)) {
    throw new GrantkeeperError('bad_key_file', `${what} certifies another key than the private key given`);
  }
  return createHash('sha256').update(cert.raw).digest('base64url');
}

/** The key as it is sealed: PKCS#8 PEM whatever form it was read in. */
export function pkcs8Pem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}
