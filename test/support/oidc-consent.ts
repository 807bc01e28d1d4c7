import { randomBytes } from 'node:crypto';
import { createPkcePair } from '../../src/oauth/pkce.js';
import type { ProviderProfile } from '../../src/oauth/providers.js';
import { TokenClient, type TokenEndpointTarget } from '../../src/oauth/token-client.js';
import type { TokenSet } from '../../src/oauth/token-response.js';
import type { OidcServer } from './oidc-server.js';

/** Authorization code + PKCE against the test server, driven as the user's browser would. */
export async function consentTokens(
  oidc: OidcServer,
  profile: ProviderProfile,
  target: TokenEndpointTarget,
  redirectUri: string,
  accountId?: string,
): Promise<TokenSet & { refreshToken: string }> {
  const pkce = createPkcePair();
  const authorize = new URL(profile.authorizationEndpoint);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: target.clientId,
    redirect_uri: redirectUri,
    scope: 'openid offline_access',
    prompt: 'consent',
    state: randomBytes(16).toString('base64url'),
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
  }).toString();
  const callback = await oidc.driveConsent(authorize.toString(), accountId ? { accountId } : {});
  const tokenClient = new TokenClient({ timeoutMs: 5000 });
  try {
    const tokens = await tokenClient.exchangeCode(target, {
      code: callback.searchParams.get('code') ?? '',
      redirectUri,
      codeVerifier: pkce.verifier,
    });
    if (!tokens.refreshToken) throw new Error('the test server issued no refresh token');
    return { ...tokens, refreshToken: tokens.refreshToken };
  } finally {
    await tokenClient.close();
  }
}
