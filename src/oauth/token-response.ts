import { z } from 'zod';

export interface TokenSet {
  accessToken: string;
  refreshToken?: string;
  /** Seconds, as the server sent it: may be 0 or negative (the timing policy decides what that means). */
  expiresIn?: number;
  tokenType?: string;
  scope?: string;
  idToken?: string;
}

/**
 * Once a rotating server has answered 200 the old refresh token is spent, so rejecting the whole
 * body over a cosmetic field would kill the grant on the next retry. Optional fields therefore
 * degrade to "absent" (null, or an unusable expires_in) instead of failing the parse; only what we
 * cannot store safely (no access token, a non-string token) fails.
 */
const optionalString = z
  .string()
  .nullish()
  .transform((v) => v ?? undefined);

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

export const tokenResponseSchema = z.object({
  access_token: z.string().min(1),
  // An empty refresh token is unusable; treating it as absent keeps the one we already hold.
  refresh_token: optionalString.transform((v) => (v === '' ? undefined : v)),
  expires_in: expiresIn,
  token_type: optionalString,
  scope: optionalString,
  id_token: optionalString,
});

/** RFC 6749 §5.2 error body. A malformed optional field must not hide the error code that decides the grant's fate. */
export const tokenErrorResponseSchema = z.object({
  error: z.string().min(1),
  error_description: z.string().optional().catch(undefined),
  error_uri: z.string().optional().catch(undefined),
});

/** Parses a successful token endpoint body; throws when it holds no usable access token. */
export function parseTokenResponse(json: unknown): TokenSet {
  const body = tokenResponseSchema.parse(json);
  const set: TokenSet = { accessToken: body.access_token };
  if (body.refresh_token !== undefined) set.refreshToken = body.refresh_token;
  if (body.expires_in !== undefined) set.expiresIn = body.expires_in;
  if (body.token_type !== undefined) set.tokenType = body.token_type;
  if (body.scope !== undefined) set.scope = body.scope;
  if (body.id_token !== undefined) set.idToken = body.id_token;
  return set;
}
