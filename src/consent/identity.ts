import type { JWTVerifyGetKey } from 'jose';
import { request } from 'undici';
import { z } from 'zod';
import type { ProviderProfile } from '../oauth/providers.js';
import { assertSecureEndpoint, discardBody, readCapped } from '../oauth/token-client.js';
import type { TokenSet } from '../oauth/token-response.js';
import { canValidateIdTokens, type IdTokenExpectations, validateIdToken } from './id-token.js';

/** X has no OIDC: its "who am I" is this API call with the user's bearer token. */
export const X_USERS_ME = 'https://api.x.com/2/users/me';

export interface AccountIdentity {
  /** The provider's stable account id. */
  subject?: string;
  /** A human name for the grant's label: @username, an email or a user principal name. */
  name?: string;
}

/** GET with a bearer token, returning parsed JSON; throws on anything but a 2xx JSON body. */
export type BearerGet = (url: string, accessToken: string) => Promise<unknown>;

const claimsSchema = z.object({
  sub: z.string().min(1).optional().catch(undefined),
  preferred_username: z.string().min(1).optional().catch(undefined),
  email: z.string().min(1).optional().catch(undefined),
  upn: z.string().min(1).optional().catch(undefined),
});
type Claims = z.infer<typeof claimsSchema>;

const xMeSchema = z.object({ data: z.object({ id: z.string().min(1), username: z.string().min(1) }) });

function fromClaims(claims: Claims | undefined): AccountIdentity {
  const name = claims?.preferred_username ?? claims?.email ?? claims?.upn;
  return { ...(claims?.sub ? { subject: claims.sub } : {}), ...(name ? { name } : {}) };
}

export interface IdentityOptions {
  /** What the id_token must match: our client id and the nonce sent. */
  idToken: Omit<IdTokenExpectations, 'profile'>;
  get?: BearerGet;
  /** Injected by tests; the issuer's remote key set otherwise. */
  keys?: JWTVerifyGetKey;
}

/**
 * Who consented: X from GET /2/users/me (`@username`); Google, Microsoft and OIDC from the id_token
 * once validated (IdTokenError when it fails), then userinfo when it names no one readable. A
 * profile that cannot validate id_tokens never reads their claims: userinfo alone, or no name.
 */
export async function resolveIdentity(
  profile: ProviderProfile,
  tokens: TokenSet,
  opts: IdentityOptions,
): Promise<AccountIdentity> {
  const get = opts.get ?? bearerGetJson;
  if (profile.kind === 'x') {
    const me = xMeSchema.parse(await get(X_USERS_ME, tokens.accessToken));
    return { subject: me.data.id, name: `@${me.data.username}` };
  }
  let fromIdToken: AccountIdentity = {};
  if (tokens.idToken && canValidateIdTokens(profile)) {
    const expect = { ...opts.idToken, profile };
    fromIdToken = fromClaims(claimsSchema.parse(await validateIdToken(tokens.idToken, expect, opts.keys)));
  }
  if (fromIdToken.name || !profile.userinfoEndpoint) return fromIdToken;
  const fromUserinfo = fromClaims(
    claimsSchema.parse(await get(profile.userinfoEndpoint, tokens.accessToken)),
  );
  // OIDC Core §5.3.2: userinfo about another subject than the id_token's must not be used.
  if (fromIdToken.subject && fromUserinfo.subject !== fromIdToken.subject) return fromIdToken;
  return { ...fromUserinfo, ...fromIdToken, ...(fromUserinfo.name ? { name: fromUserinfo.name } : {}) };
}

const MAX_IDENTITY_BYTES = 64 * 1024;

export async function bearerGetJson(url: string, accessToken: string): Promise<unknown> {
  const target = assertSecureEndpoint(url, 'identity endpoint');
  const res = await request(target, {
    headers: {
      authorization: `Bearer ${accessToken}`,
      accept: 'application/json',
      'user-agent': 'grantkeeper',
    },
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  if (res.statusCode < 200 || res.statusCode >= 300) {
    discardBody(res.body);
    throw new Error(`${target.origin}${target.pathname} answered HTTP ${res.statusCode}`);
  }
  const raw = await readCapped(res.body, MAX_IDENTITY_BYTES);
  if (raw === undefined) throw new Error(`${target.origin}${target.pathname} sent an oversized answer`);
  return JSON.parse(raw.toString('utf8'));
}
