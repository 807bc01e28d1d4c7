import { z } from 'zod';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { type RateLimit, rateLimitSchema } from '../pacing/rate-limit.js';
import type { FixedRefreshLifetime } from '../policy/refresh-plan.js';
import { discoverIssuer, type IssuerMetadata } from './discovery.js';
import { assertSecureEndpoint, type ClientAuthMethod } from './token-client.js';

export type ProviderKind = 'x' | 'microsoft' | 'google' | 'oidc';

export interface ProviderProfile {
  kind: ProviderKind;
  issuer?: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint?: string;
  userinfoEndpoint?: string;
  /** RFC 8628's device authorization endpoint, where the provider offers device-code consent. */
  deviceAuthorizationEndpoint?: string;
  /** Includes the offline scope when the provider has one. */
  defaultScopes: string[];
  offlineScope?: string;
  extraAuthorizeParams: Record<string, string>;
  confidentialAuthMethod: ClientAuthMethod;
  rotatesRefreshTokens: boolean;
  /**
   * A rotated-out refresh token keeps working (Microsoft). With this, or without rotation, a request
   * whose answer was lost can be retried at once; otherwise a replay may revoke the whole grant, so
   * a grant in doubt waits a long grace first (invariant 2).
   */
  oldRefreshTokensStayValid: boolean;
  /** The issuer's JSON Web Key Set, for validating id_tokens. */
  jwksUri?: string;
  /** Used when a token response has no expires_in. */
  defaultAccessLifetimeSec: number;
  refreshIdleLimitSec: number;
  /** Comfortably under the idle limit. */
  keepAliveIntervalSec: number;
  /** A fixed refresh-token lifetime from consent that no refresh extends (Google Testing, Microsoft SPA). */
  refreshTokenLifetime?: FixedRefreshLifetime;
  /** Where client-credentials and JWT-bearer requests go when not the token endpoint (X's app-only tokens). */
  serviceTokenEndpoint?: string;
  /** Scopes a client-credentials grant asks for unless told (Microsoft's `.default` of Graph). */
  serviceDefaultScopes?: string[];
  /**
   * Google's JWT-bearer: the scope travels in the assertion's `scope` claim, and `sub` appears only
   * to name a delegated user. Otherwise (RFC 7523) scope is a form parameter and `sub` defaults to the client.
   */
  scopeInAssertion?: boolean;
  /** The client's token-endpoint budget across every replica (`client add --rate`); none by default. */
  rateLimit?: RateLimit;
}

export type ProviderSpec =
  | { kind: 'x' }
  /** `testing`: the app's consent screen is in Testing status, so refresh tokens die after 7 days. */
  | { kind: 'google'; testing?: boolean }
  /** `spa`: a single-page-application registration, whose refresh tokens end 24 h after consent. */
  | { kind: 'microsoft'; tenant?: string; spa?: boolean }
  | {
      kind: 'oidc';
      issuer?: string;
      endpoints?: {
        authorization: string;
        token: string;
        revocation?: string;
        userinfo?: string;
        device?: string;
      };
    };

const HOUR = 3600;
const DAY = 24 * HOUR;

function xProfile(): ProviderProfile {
  return {
    kind: 'x',
    authorizationEndpoint: 'https://x.com/i/oauth2/authorize',
    tokenEndpoint: 'https://api.x.com/2/oauth2/token',
    revocationEndpoint: 'https://api.x.com/2/oauth2/revoke',
    defaultScopes: ['tweet.read', 'users.read', 'offline.access'],
    offlineScope: 'offline.access',
    extraAuthorizeParams: {},
    confidentialAuthMethod: 'client_secret_basic',
    rotatesRefreshTokens: true,
    // A replayed spent token is refused and, reportedly, ends the grant.
    oldRefreshTokensStayValid: false,
    defaultAccessLifetimeSec: 2 * HOUR,
    refreshIdleLimitSec: 180 * DAY,
    keepAliveIntervalSec: 30 * DAY,
    // App-only bearer tokens: the client-credentials grant, HTTP Basic, at the v1 path.
    serviceTokenEndpoint: 'https://api.x.com/oauth2/token',
  };
}

export const MS_TENANT_GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// `common`, `organizations`, `consumers` and verified domains such as contoso.onmicrosoft.com.
const MS_TENANT_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function microsoftProfile(tenant = 'common', spa = false): ProviderProfile {
  // The tenant lands in the endpoint path, so anything beyond a GUID or host-like name is refused.
  if (!MS_TENANT_GUID.test(tenant) && !MS_TENANT_NAME.test(tenant)) {
    throw new GrantkeeperError(
      'bad_provider',
      `Microsoft tenant "${tenant.slice(0, 80)}" is not valid: use a tenant id (GUID), a domain ` +
        'such as contoso.onmicrosoft.com, or common, organizations or consumers',
    );
  }
  const base = `https://login.microsoftonline.com/${tenant}/oauth2/v2.0`;
  const profile: ProviderProfile = {
    kind: 'microsoft',
    authorizationEndpoint: `${base}/authorize`,
    tokenEndpoint: `${base}/token`,
    deviceAuthorizationEndpoint: `${base}/devicecode`,
    // Graph's userinfo answers for tokens minted with the OIDC scopes plus User.Read.
    userinfoEndpoint: 'https://graph.microsoft.com/oidc/userinfo',
    jwksUri: `https://login.microsoftonline.com/${tenant}/discovery/v2.0/keys`,
    // openid + profile give an id_token naming the account (for labels); offline_access yields the refresh
    // token; User.Read pins the access token to Graph, the one resource every tenant lets users consent to.
    defaultScopes: ['openid', 'profile', 'offline_access', 'User.Read'],
    offlineScope: 'offline_access',
    extraAuthorizeParams: {},
    confidentialAuthMethod: 'client_secret_post',
    rotatesRefreshTokens: true,
    // Microsoft issues a new refresh token on each use but does not revoke the one presented.
    oldRefreshTokensStayValid: true,
    defaultAccessLifetimeSec: HOUR,
    // Web and native clients; SPA registrations get a fixed 24 h and cannot be kept alive at all.
    refreshIdleLimitSec: 90 * DAY,
    keepAliveIntervalSec: 14 * DAY,
    // Application permissions are granted by an admin in the portal; .default asks for all of them.
    serviceDefaultScopes: ['https://graph.microsoft.com/.default'],
  };
  if (spa) {
    profile.refreshTokenLifetime = {
      seconds: DAY,
      reason: 'Microsoft SPA clients: refresh tokens end 24 h after consent',
    };
  }
  // Multi-tenant aliases issue tokens under each account's own tenant, so only a GUID fixes the issuer.
  if (MS_TENANT_GUID.test(tenant)) profile.issuer = `https://login.microsoftonline.com/${tenant}/v2.0`;
  return profile;
}

function googleProfile(testing = false): ProviderProfile {
  const profile: ProviderProfile = {
    kind: 'google',
    issuer: 'https://accounts.google.com',
    authorizationEndpoint: 'https://accounts.google.com/o/oauth2/v2/auth',
    tokenEndpoint: 'https://oauth2.googleapis.com/token',
    revocationEndpoint: 'https://oauth2.googleapis.com/revoke',
    userinfoEndpoint: 'https://openidconnect.googleapis.com/v1/userinfo',
    // Only for "TVs and Limited Input devices" clients, and only for a short list of scopes.
    deviceAuthorizationEndpoint: 'https://oauth2.googleapis.com/device/code',
    jwksUri: 'https://www.googleapis.com/oauth2/v3/certs',
    // Google has no offline scope: access_type=offline asks for the refresh token, and prompt=consent
    // makes Google issue one again on a repeat consent.
    defaultScopes: ['openid', 'email'],
    extraAuthorizeParams: { access_type: 'offline', prompt: 'consent' },
    confidentialAuthMethod: 'client_secret_post',
    rotatesRefreshTokens: false,
    oldRefreshTokensStayValid: true,
    defaultAccessLifetimeSec: HOUR,
    // Apps still in Testing status lose refresh tokens after 7 days whatever we do; that is not idleness.
    refreshIdleLimitSec: 180 * DAY,
    keepAliveIntervalSec: 30 * DAY,
  };
  if (testing) {
    profile.refreshTokenLifetime = {
      seconds: 7 * DAY,
      reason: 'Google apps in Testing status: refresh tokens end 7 days after consent',
    };
  }
  return profile;
}

/** RFC 6749 §2.3.1 makes Basic mandatory to support, and OIDC Discovery makes it the default when unlisted. */
function pickAuthMethod(supported: string[] | undefined, issuer: string): ClientAuthMethod {
  if (!supported || supported.includes('client_secret_basic')) return 'client_secret_basic';
  if (supported.includes('client_secret_post')) return 'client_secret_post';
  if (supported.includes('none')) return 'none';
  throw new GrantkeeperError(
    'bad_provider',
    `issuer ${issuer} supports only ${supported.join(', ') || 'no'} client authentication; ` +
      'grantkeeper needs client_secret_basic, client_secret_post or none',
  );
}

function oidcProfile(meta: Omit<IssuerMetadata, 'issuer'> & { issuer?: string }): ProviderProfile {
  const profile: ProviderProfile = {
    kind: 'oidc',
    authorizationEndpoint: meta.authorizationEndpoint,
    tokenEndpoint: meta.tokenEndpoint,
    defaultScopes: ['openid', 'offline_access'],
    offlineScope: 'offline_access',
    // OIDC Core §11: servers may ignore offline_access unless the user is prompted for consent.
    extraAuthorizeParams: { prompt: 'consent' },
    confidentialAuthMethod: pickAuthMethod(meta.tokenEndpointAuthMethodsSupported, meta.issuer ?? 'server'),
    // Unknown servers may rotate and revoke on replay; assuming both is the safe side.
    rotatesRefreshTokens: true,
    oldRefreshTokensStayValid: false,
    defaultAccessLifetimeSec: HOUR,
    // Unknown, so assume a short one (Auth0 defaults to 15 days of inactivity).
    refreshIdleLimitSec: 14 * DAY,
    keepAliveIntervalSec: 7 * DAY,
  };
  if (meta.issuer) profile.issuer = meta.issuer;
  if (meta.revocationEndpoint) profile.revocationEndpoint = meta.revocationEndpoint;
  if (meta.userinfoEndpoint) profile.userinfoEndpoint = meta.userinfoEndpoint;
  if (meta.jwksUri) profile.jwksUri = meta.jwksUri;
  if (meta.deviceAuthorizationEndpoint)
    profile.deviceAuthorizationEndpoint = meta.deviceAuthorizationEndpoint;
  return profile;
}

export async function resolveProvider(
  spec: ProviderSpec,
  opts: { discover?: typeof discoverIssuer } = {},
): Promise<ProviderProfile> {
  switch (spec.kind) {
    case 'x':
      return xProfile();
    case 'google':
      return googleProfile(spec.testing);
    case 'microsoft':
      return microsoftProfile(spec.tenant, spec.spa);
    case 'oidc': {
      if (spec.endpoints) {
        const e = spec.endpoints;
        const endpoint = (value: string, name: string) =>
          assertSecureEndpoint(value, `${name} endpoint`).href;
        return oidcProfile({
          ...(spec.issuer ? { issuer: spec.issuer } : {}),
          authorizationEndpoint: endpoint(e.authorization, 'authorization'),
          tokenEndpoint: endpoint(e.token, 'token'),
          ...(e.revocation ? { revocationEndpoint: endpoint(e.revocation, 'revocation') } : {}),
          ...(e.userinfo ? { userinfoEndpoint: endpoint(e.userinfo, 'userinfo') } : {}),
          ...(e.device ? { deviceAuthorizationEndpoint: endpoint(e.device, 'device authorization') } : {}),
        });
      }
      if (!spec.issuer)
        throw new GrantkeeperError(
          'bad_provider',
          'an oidc provider needs an issuer URL or explicit endpoints',
        );
      return oidcProfile(await (opts.discover ?? discoverIssuer)(spec.issuer));
    }
  }
}

/**
 * A provider profile as stored with its client (JSON), parsed rather than cast. Profiles written by
 * older versions lack newer fields; those default per provider kind, on the safe side.
 */
export const providerProfileSchema = z
  .object({
    kind: z.enum(['x', 'microsoft', 'google', 'oidc']),
    issuer: z.string().optional(),
    authorizationEndpoint: z.string(),
    tokenEndpoint: z.string(),
    revocationEndpoint: z.string().optional(),
    userinfoEndpoint: z.string().optional(),
    deviceAuthorizationEndpoint: z.string().optional(),
    jwksUri: z.string().optional(),
    defaultScopes: z.array(z.string()),
    offlineScope: z.string().optional(),
    extraAuthorizeParams: z.record(z.string(), z.string()).default({}),
    confidentialAuthMethod: z.enum(['client_secret_basic', 'client_secret_post', 'none']),
    rotatesRefreshTokens: z.boolean(),
    oldRefreshTokensStayValid: z.boolean().optional(),
    defaultAccessLifetimeSec: z.number().positive(),
    refreshIdleLimitSec: z.number().positive(),
    keepAliveIntervalSec: z.number().positive(),
    refreshTokenLifetime: z.object({ seconds: z.number().positive(), reason: z.string() }).optional(),
    rateLimit: rateLimitSchema.optional(),
    serviceTokenEndpoint: z.string().optional(),
    serviceDefaultScopes: z.array(z.string()).optional(),
    scopeInAssertion: z.boolean().optional(),
  })
  .transform(
    (p): ProviderProfile => ({
      ...p,
      oldRefreshTokensStayValid:
        p.oldRefreshTokensStayValid ?? (p.kind === 'microsoft' || !p.rotatesRefreshTokens),
    }),
  );

export function parseStoredProfile(value: unknown): ProviderProfile {
  const parsed = providerProfileSchema.safeParse(value);
  if (!parsed.success)
    throw new GrantkeeperError('damaged_record', 'a stored client has a damaged provider profile');
  return parsed.data;
}
