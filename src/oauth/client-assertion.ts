import { createPrivateKey, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { SigningAlg } from '../crypto/signing-key.js';

/** A client's private key, opened for signing: only ever held in memory, for a token request. */
export interface ClientSigningKey {
  /** PKCS#8 PEM. */
  privateKeyPem: string;
  alg: SigningAlg;
  keyId?: string;
  x5tS256?: string;
  /** A fixed `aud` (the issuer, where the server wants it); absent: the token endpoint the request goes to. */
  audience?: string;
}

/** Short enough that a captured assertion is soon useless, long enough for clock skew (RFC 7523 §3). */
export const ASSERTION_LIFETIME_SEC = 60;

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/**
 * Signs one assertion (RFC 7523 §3) for one request: a fresh random `jti`, `iat` now and `exp` a
 * minute on, so a retry never presents one the server has seen (servers refuse replays). `claims`
 * carries `iss`, `sub` and anything the grant adds (Google's `scope`).
 */
export async function signAssertion(
  key: ClientSigningKey,
  claims: { iss: string; sub?: string; aud: string; [claim: string]: unknown },
  now: number = Date.now(),
): Promise<string> {
  const iat = Math.floor(now / 1000);
  const header = {
    alg: key.alg,
    typ: 'JWT',
    ...(key.keyId ? { kid: key.keyId } : {}),
    ...(key.x5tS256 ? { 'x5t#S256': key.x5tS256 } : {}),
  };
  return new SignJWT({
    ...claims,
    jti: randomBytes(18).toString('base64url'),
    iat,
    exp: iat + ASSERTION_LIFETIME_SEC,
  })
    .setProtectedHeader(header)
    .sign(createPrivateKey(key.privateKeyPem));
}

/** RFC 7523 §2.2: the client authenticates with an assertion about itself, audience the server. */
export function clientAuthenticationAssertion(
  key: ClientSigningKey,
  clientId: string,
  tokenEndpoint: string,
) {
  return signAssertion(key, { iss: clientId, sub: clientId, aud: key.audience ?? tokenEndpoint });
}
