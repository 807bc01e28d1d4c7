import { request } from 'undici';
import { z } from 'zod';
import type { ProviderProfile } from '../oauth/providers.js';
import { assertSecureEndpoint, discardBody, readCapped } from '../oauth/token-client.js';
import type { TokenSet } from '../oauth/token-response.js';

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

const xMeSchema = z.object({ data: z.object({ id: z.string().min(1), username: z.string().min(1) }) });

/**
 * The id_token's payload, unverified. OIDC Core §3.1.3.7 lets a client skip the signature check on
 * an id_token it received directly from the token endpoint over TLS (the server authenticated
 * itself and us); it is used for a label, never for access decisions.
 */
export function idTokenClaims(idToken: string): z.infer<typeof claimsSchema> | undefined {
  const payload = idToken.split('.')[1];
  if (!payload) return undefined;
  try {
    return claimsSchema.parse(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
  } catch {
    return undefined;
  }
}

function fromClaims(claims: z.infer<typeof claimsSchema> | undefined): AccountIdentity {
  const name = claims?.preferred_username ?? claims?.email ?? claims?.upn;
  return { ...(claims?.sub ? { subject: claims.sub } : {}), ...(name ? { name } : {}) };
}

/**
 * Who consented: X from GET /2/users/me (`@username`); Google, Microsoft and OIDC from the id_token,
 * then userinfo when the id_token names no one readable.
 */
export async function resolveIdentity(
  profile: ProviderProfile,
  tokens: TokenSet,
  get: BearerGet = bearerGetJson,
): Promise<AccountIdentity> {
  if (profile.kind === 'x') {
    const me = xMeSchema.parse(await get(X_USERS_ME, tokens.accessToken));
    return { subject: me.data.id, name: `@${me.data.username}` };
  }
  const fromIdToken = fromClaims(tokens.idToken ? idTokenClaims(tokens.idToken) : undefined);
  if (fromIdToken.name || !profile.userinfoEndpoint) return fromIdToken;
  const fromUserinfo = fromClaims(
    claimsSchema.parse(await get(profile.userinfoEndpoint, tokens.accessToken)),
  );
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
