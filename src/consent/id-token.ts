import {
  createRemoteJWKSet,
  customFetch,
  errors,
  type FetchImplementation,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { request } from 'undici';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { MS_TENANT_GUID, type ProviderProfile } from '../oauth/providers.js';
import { assertSecureEndpoint, readCapped } from '../oauth/token-client.js';
import { ConsentError, sameSecret } from './callback.js';

/** An id_token that cannot be trusted; the message names the check that failed, never the token. */
export class IdTokenError extends ConsentError {}

export interface IdTokenExpectations {
  profile: ProviderProfile;
  clientId: string;
  /** The nonce sent with the authorization request; absent when none was (no `openid` scope). */
  nonce?: string;
}

// Small enough that a replayed or stale token is caught, large enough for a machine whose clock drifts.
const CLOCK_TOLERANCE_SEC = 60;
// The id_token comes straight from the token endpoint, so it was minted moments ago.
const MAX_AGE_SEC = 3600;
const JWKS_TIMEOUT_MS = 10_000;
const MAX_JWKS_BYTES = 256 * 1024;
// Asymmetric only: a key set holds public keys, and HS*/none would let anyone sign.
const ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

const MS_ISSUER = (tid: string) => `https://login.microsoftonline.com/${tid}/v2.0`;

/**
 * Whether id_tokens of this provider can be validated: a key set to check signatures against, and an
 * issuer to expect (fixed, or for Microsoft's multi-tenant aliases the account's own tenant). Without
 * both, an id_token's claims are never trusted.
 */
export function canValidateIdTokens(profile: ProviderProfile): boolean {
  return profile.jwksUri !== undefined && (profile.issuer !== undefined || profile.kind === 'microsoft');
}

/** Why the (signature-checked) payload's `iss` is not the issuer we expect, or undefined when it is. */
export function issuerProblem(payload: JWTPayload, profile: ProviderProfile): string | undefined {
  if (profile.issuer !== undefined) {
    // Google documents both spellings of its issuer.
    const accepted = profile.kind === 'google' ? [profile.issuer, 'accounts.google.com'] : [profile.issuer];
    return payload.iss !== undefined && accepted.includes(payload.iss)
      ? undefined
      : `its issuer (iss) is not ${profile.issuer}`;
  }
  if (profile.kind === 'microsoft') {
    // common/organizations/consumers (or a domain) sign for every tenant: the issuer names the
    // account's own tenant, so it must be exactly that tenant's issuer.
    const tid = payload.tid;
    if (typeof tid !== 'string' || !MS_TENANT_GUID.test(tid)) return 'it names no tenant id (tid)';
    return payload.iss === MS_ISSUER(tid) ? undefined : `its issuer (iss) is not ${MS_ISSUER('{tid}')}`;
  }
  return 'no issuer is known to check it against';
}

/** OIDC Core §3.1.3.7: with several audiences, or any `azp`, the authorized party must be us. */
export function authorizedPartyProblem(payload: JWTPayload, clientId: string): string | undefined {
  const several = Array.isArray(payload.aud) && payload.aud.length > 1;
  if (payload.azp === undefined && !several) return undefined;
  return payload.azp === clientId ? undefined : 'it was issued to another party (azp is not this client id)';
}

function nonceProblem(payload: JWTPayload, nonce: string | undefined): string | undefined {
  if (nonce === undefined) return undefined;
  if (typeof payload.nonce !== 'string') return 'it carries no nonce, though one was sent';
  return sameSecret(payload.nonce, nonce)
    ? undefined
    : 'its nonce is not the one sent with this consent request';
}

/**
 * Validates an id_token before any of its claims is used (OIDC Core §3.1.3.7): signature through the
 * issuer's key set, issuer, audience (our client id), authorized party, exp and iat within a small
 * clock tolerance, and the nonce. Returns the payload; throws IdTokenError naming what failed.
 */
export async function validateIdToken(
  idToken: string,
  expect: IdTokenExpectations,
  keys?: JWTVerifyGetKey,
): Promise<JWTPayload> {
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(idToken, keys ?? remoteKeySet(expect.profile), {
      algorithms: ALGORITHMS,
      audience: expect.clientId,
      clockTolerance: CLOCK_TOLERANCE_SEC,
      maxTokenAge: MAX_AGE_SEC,
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat'],
    }));
  } catch (err) {
    throw new IdTokenError(failure(describeJoseError(err)), { cause: err });
  }
  const problem =
    issuerProblem(payload, expect.profile) ??
    authorizedPartyProblem(payload, expect.clientId) ??
    nonceProblem(payload, expect.nonce);
  if (problem) throw new IdTokenError(failure(problem));
  return payload;
}

const failure = (why: string) => `the provider's id_token failed validation: ${why}; nothing was stored`;

/** jose's verdicts in words for the operator; jose's own messages never quote the token either. */
function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) {
    return err.claim === 'iat' ? 'it was issued too long ago (iat)' : 'it has expired (exp)';
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return 'its audience (aud) is not this client id';
    if (err.reason === 'missing') return `it lacks the ${err.claim} claim`;
    if (err.claim === 'iat') return 'it claims to be issued in the future (iat)';
    if (err.claim === 'nbf') return 'it is not valid yet (nbf)';
    return `its ${err.claim} claim is wrong (${err.message})`;
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return "its signature does not verify with the issuer's keys (altered or signed by someone else)";
  }
  if (err instanceof errors.JWKSNoMatchingKey)
    return "it is signed with a key the issuer's key set does not hold";
  if (err instanceof errors.JOSEAlgNotAllowed) return 'it is signed with an algorithm that is not accepted';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid)
    return 'it is not a well-formed signed JWT';
  if (err instanceof errors.JWKSTimeout) {
    return `the issuer's key set did not answer within ${JWKS_TIMEOUT_MS / 1000} s`;
  }
  if (err instanceof errors.JWKSInvalid) return "the issuer's key set is not a valid JWKS";
  if (err instanceof GrantkeeperError) return err.message;
  if (err instanceof KeySetFetchFailed || err instanceof errors.JOSEError) {
    return `the issuer's key set could not be read (${err.message})`;
  }
  return `the issuer's key set could not be fetched (${err instanceof Error ? err.message : String(err)})`;
}

class KeySetFetchFailed extends Error {}

function remoteKeySet(profile: ProviderProfile): JWTVerifyGetKey {
  if (!profile.jwksUri) throw new Error('no key set to validate id_tokens with');
  const url = assertSecureEndpoint(profile.jwksUri, 'jwks_uri');
  return createRemoteJWKSet(url, { timeoutDuration: JWKS_TIMEOUT_MS, [customFetch]: cappedFetch });
}

/** jose's fetch, with the body read only up to a bound: a key set is a few KiB. */
const cappedFetch: FetchImplementation = async (url, options) => {
  try {
    const res = await request(url, { method: 'GET', headers: options.headers, signal: options.signal });
    const body = await readCapped(res.body, MAX_JWKS_BYTES);
    if (body === undefined) throw new KeySetFetchFailed(`larger than ${MAX_JWKS_BYTES} bytes`);
    return new Response(new Uint8Array(body), { status: res.statusCode });
  } catch (err) {
    // jose recognises its timeout by the signal's own reason (a TimeoutError).
    throw options.signal.aborted ? options.signal.reason : err;
  }
};
