import { z } from 'zod';

export interface TokenSet {
  accessToken: string;
  refreshToken?: string;
  /** Seconds, as the server sent it: may be 0 or negative (the timing policy decides what that means). */
  expiresIn?: number;
  /** Seconds the refresh token itself lives (`refresh_token_expires_in`: GitHub, X, some OIDC servers), as sent. */
  refreshTokenExpiresIn?: number;
  tokenType?: string;
  scope?: string;
  idToken?: string;
  /**
   * Not from the body: which client secret the request authenticated with, set only when the client
   * keeps a fallback secret (rotation), so the caller can record which one works.
   */
  clientSecretUsed?: 'current' | 'previous';
}

/**
 * Tokens travel in HTTP headers and form bodies, so they are visible ASCII (RFC 6749 Appendix A:
 * VSCHAR). An access token goes into `Authorization: Bearer …` and so may not contain a space
 * either. A control character (CR, LF, NUL…) in either one is a protocol error, never stored.
 * (RFC 6750's token68 would be stricter still, but real providers issue opaque tokens with `!`
 * and `|`, which are harmless in a header.)
 */
const ACCESS_TOKEN = /^[\x21-\x7e]+$/;
const REFRESH_TOKEN = /^[\x20-\x7e]+$/;

/** A 2xx body we cannot use as it stands. Its message never quotes the body. */
export class TokenResponseError extends Error {
  override readonly name = 'TokenResponseError';
  /** Private so that no serializer (pino, JSON.stringify, util.inspect) ever reaches it. */
  readonly #salvaged: string | undefined;

  constructor(message: string, salvagedRefreshToken?: string) {
    super(message);
    this.#salvaged = salvagedRefreshToken;
  }

  /**
   * A valid rotated refresh token found in an otherwise unusable answer. The one we sent is spent,
   * so this one is the grant: it must be stored even though the answer is refused.
   */
  salvagedRefreshToken(): string | undefined {
    return this.#salvaged;
  }
}

/**
 * Once a rotating server has answered 200 the old refresh token is spent, so rejecting the whole
 * body over a cosmetic field would kill the grant on the next retry. Cosmetic fields therefore
 * degrade to "absent" (null, a wrong type, an unusable expires_in) instead of failing the parse;
 * only the two tokens are strict.
 */
const cosmetic = z
  .unknown()
  .transform((v) => (typeof v === 'string' && /^[\x20-\x7e]+$/.test(v) ? v : undefined))
  .optional();

const finite = (n: number): number | undefined => (Number.isFinite(n) ? n : undefined);

const expiresIn = z
  .unknown()
  .transform((v): number | undefined => {
    if (typeof v === 'number') return finite(v);
    // A string of 309+ digits is Infinity: as unusable as a non-finite number.
    if (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v)) return finite(Number(v));
    return undefined;
  })
  .optional();

const bodySchema = z.object({
  access_token: z.unknown().optional(),
  refresh_token: z.unknown().optional(),
  expires_in: expiresIn,
  refresh_token_expires_in: expiresIn,
  token_type: cosmetic,
  scope: cosmetic,
  id_token: cosmetic,
});

/** RFC 6749 §5.2 error body. A malformed optional field must not hide the error code that decides the grant's fate. */
export const tokenErrorResponseSchema = z.object({
  error: z.string().min(1),
  error_description: z.string().optional().catch(undefined),
  error_uri: z.string().optional().catch(undefined),
});

/**
 * Parses a successful token endpoint body. Throws a TokenResponseError when it holds no usable
 * access token or an unusable refresh token; a valid refresh token beside an unusable access token
 * travels with the error (see salvagedRefreshToken).
 */
export function parseTokenResponse(json: unknown): TokenSet {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new TokenResponseError('the token response is not a JSON object');
  }
  const body = bodySchema.parse(json);
  // An empty refresh token is unusable; treating it as absent keeps the one we already hold.
  const refresh = body.refresh_token === null || body.refresh_token === '' ? undefined : body.refresh_token;
  if (refresh !== undefined && !(typeof refresh === 'string' && REFRESH_TOKEN.test(refresh))) {
    throw new TokenResponseError(
      'the token response carries a refresh_token that is not visible ASCII text (a protocol error)',
    );
  }
  const access = body.access_token;
  if (!(typeof access === 'string' && ACCESS_TOKEN.test(access))) {
    const what =
      access === undefined || access === null || access === ''
        ? 'no access_token'
        : 'an access_token that is not visible ASCII text without spaces (a protocol error)';
    throw new TokenResponseError(`the token response carries ${what}`, refresh);
  }
  const set: TokenSet = { accessToken: access };
  if (refresh !== undefined) set.refreshToken = refresh;
  if (body.expires_in !== undefined) set.expiresIn = body.expires_in;
  if (body.refresh_token_expires_in !== undefined) set.refreshTokenExpiresIn = body.refresh_token_expires_in;
  if (body.token_type !== undefined) set.tokenType = body.token_type;
  if (body.scope !== undefined) set.scope = body.scope;
  if (body.id_token !== undefined) set.idToken = body.id_token;
  return set;
}
