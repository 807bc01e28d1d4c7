import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  type JWTPayload,
  type JWTVerifyGetKey,
  SignJWT,
} from 'jose';

export interface IdTokenSigner {
  /** The public key set, as a provider's jwks_uri would serve it. */
  keys: JWTVerifyGetKey;
  /** A signed id_token with these claims; iat and exp default to now and an hour from now. */
  sign(claims: JWTPayload, opts?: { alg?: string; kid?: string }): Promise<string>;
}

/** An RS256 key pair standing in for a provider's signing key, for unit tests of id_token checks. */
export async function idTokenSigner(kid = 'test-key'): Promise<IdTokenSigner> {
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return {
    keys: createLocalJWKSet({ keys: [jwk] }),
    sign: (claims, opts = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iat: now, exp: now + 3600, ...claims })
        .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? kid })
        .sign(privateKey);
    },
  };
}
