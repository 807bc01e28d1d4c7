import { randomBytes } from 'node:crypto';
import type { AuthorizeParams } from '../oauth/authorize-params.js';
import { createPkcePair, type PkcePair } from '../oauth/pkce.js';
import type { ProviderProfile } from '../oauth/providers.js';

/**
 * Used when a client has no redirect URI of its own: a fixed loopback port, so it can be registered
 * as is with providers that match redirect URIs exactly (X, web-type apps).
 */
export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1:53682/callback';

export interface AuthorizationRequest {
  url: string;
  state: string;
  /** Sent whenever `openid` is requested; the id_token must carry it back (OIDC Core §3.1.2.1). */
  nonce?: string;
  codeVerifier: string;
  redirectUri: string;
  scopes: string[];
}

export interface AuthorizationRequestInput {
  profile: ProviderProfile;
  clientId: string;
  redirectUri: string;
  scopes: readonly string[];
  /** The client's own parameters, over the preset's; never one the flow owns (oauth/authorize-params). */
  authorizeParams?: AuthorizeParams;
  /** Injected by tests; fresh random values otherwise. */
  pkce?: PkcePair;
  state?: string;
  nonce?: string;
}

/** The requested scopes, deduplicated, with the provider's offline scope added when missing. */
export function withOfflineScope(profile: ProviderProfile, scopes: readonly string[]): string[] {
  const all = [...new Set(scopes)];
  if (profile.offlineScope && !all.includes(profile.offlineScope)) all.push(profile.offlineScope);
  return all;
}

const random = () => randomBytes(32).toString('base64url');

/**
 * RFC 6749 §4.1.1 with PKCE S256 (RFC 7636), a nonce with `openid`, the preset's extra parameters and
 * the client's over them. Pure but for randomness.
 */
export function buildAuthorizationRequest(input: AuthorizationRequestInput): AuthorizationRequest {
  const pkce = input.pkce ?? createPkcePair();
  const state = input.state ?? random();
  const scopes = withOfflineScope(input.profile, input.scopes);
  const nonce = scopes.includes('openid') ? (input.nonce ?? random()) : undefined;
  // Query parameters already on the endpoint (e.g. a B2C policy) are kept.
  const url = new URL(input.profile.authorizationEndpoint);
  const params: Record<string, string> = {
    ...input.profile.extraAuthorizeParams,
    ...input.authorizeParams,
    // Last, so nothing configured can replace what keeps the flow safe.
    response_type: 'code',
    client_id: input.clientId,
    redirect_uri: input.redirectUri,
    scope: scopes.join(' '),
    state,
    ...(nonce ? { nonce } : {}),
    code_challenge: pkce.challenge,
    code_challenge_method: pkce.method,
  };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return {
    url: url.href,
    state,
    ...(nonce ? { nonce } : {}),
    codeVerifier: pkce.verifier,
    redirectUri: input.redirectUri,
    scopes,
  };
}
