import { createHash, randomBytes } from 'node:crypto';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth, type OidcServer, type OidcTestClient, startOidcServer } from '../support/oidc-server.js';

interface TokenResponse {
  access_token?: string;
  refresh_token?: string;
  id_token?: string;
  token_type?: string;
  expires_in?: number;
  scope?: string;
  error?: string;
  error_description?: string;
}

let server: OidcServer;
let client: OidcTestClient;

beforeAll(async () => {
  server = await startOidcServer();
  client = server.clients[0] as OidcTestClient;
});

afterAll(async () => {
  await server?.close();
});

function authorizationRequest() {
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(8).toString('base64url');
  const url = new URL(server.authorizationEndpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.clientId,
    redirect_uri: client.redirectUris[0] as string,
    scope: 'openid offline_access',
    prompt: 'consent',
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString();
  return { url: url.href, verifier, state };
}

async function tokenRequest(
  params: Record<string, string>,
): Promise<{ status: number; body: TokenResponse }> {
  const res = await fetch(server.tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: basicAuth(client.clientId, client.clientSecret as string),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams(params).toString(),
  });
  return { status: res.status, body: (await res.json()) as TokenResponse };
}

describe('oidc test server', () => {
  it('runs the code flow with PKCE, rotates refresh tokens and revokes the grant on replay', async () => {
    const { url, verifier, state } = authorizationRequest();
    const callback = await server.driveConsent(url);
    expect(`${callback.origin}${callback.pathname}`).toBe(client.redirectUris[0]);
    expect(callback.searchParams.get('state')).toBe(state);
    const code = callback.searchParams.get('code');
    expect(code).toBeTruthy();

    const exchanged = await tokenRequest({
      grant_type: 'authorization_code',
      code: code as string,
      redirect_uri: client.redirectUris[0] as string,
      code_verifier: verifier,
    });
    expect(exchanged.status).toBe(200);
    expect(exchanged.body).toMatchObject({ token_type: 'Bearer', expires_in: 5 });
    expect(exchanged.body.scope?.split(' ').sort()).toEqual(['offline_access', 'openid']);
    expect(exchanged.body.id_token).toBeTruthy();
    const firstRefresh = exchanged.body.refresh_token as string;
    expect(firstRefresh).toBeTruthy();

    expect(await server.introspect(exchanged.body.access_token as string)).toMatchObject({
      active: true,
      client_id: client.clientId,
      sub: 'test-user',
    });
    expect(await server.introspect(firstRefresh)).toMatchObject({ active: true });

    const second = await tokenRequest({ grant_type: 'refresh_token', refresh_token: firstRefresh });
    expect(second.status).toBe(200);
    const secondRefresh = second.body.refresh_token as string;
    expect(secondRefresh).toBeTruthy();
    expect(secondRefresh).not.toBe(firstRefresh);

    const third = await tokenRequest({ grant_type: 'refresh_token', refresh_token: secondRefresh });
    expect(third.status).toBe(200);
    const thirdRefresh = third.body.refresh_token as string;
    expect(thirdRefresh).not.toBe(secondRefresh);
    const newestAccess = third.body.access_token as string;
    expect(await server.introspect(newestAccess)).toMatchObject({ active: true });
    expect(server.counters.refreshes).toBe(2);

    const before = { ...server.counters };
    const replay = await tokenRequest({ grant_type: 'refresh_token', refresh_token: firstRefresh });
    expect(replay.status).toBe(400);
    expect(replay.body.error).toBe('invalid_grant');
    expect(server.counters.reuseDetected).toBe(before.reuseDetected + 1);
    expect(server.counters.grantsRevoked).toBe(before.grantsRevoked + 1);
    expect(server.counters.refreshes).toBe(before.refreshes);

    // The whole grant is gone: the newest tokens die with it.
    expect(await server.introspect(newestAccess)).toEqual({ active: false });
    expect(await server.introspect(thirdRefresh)).toEqual({ active: false });
    const afterRevoke = await tokenRequest({ grant_type: 'refresh_token', refresh_token: thirdRefresh });
    expect(afterRevoke.body.error).toBe('invalid_grant');
  });

  it('returns error=access_denied to the redirect_uri when the user denies consent', async () => {
    const { url, state } = authorizationRequest();
    const callback = await server.driveConsent(url, { deny: true });
    expect(`${callback.origin}${callback.pathname}`).toBe(client.redirectUris[0]);
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('state')).toBe(state);
    expect(callback.searchParams.get('code')).toBeNull();
  });

  it('requires PKCE', async () => {
    const { url } = authorizationRequest();
    const withoutPkce = new URL(url);
    withoutPkce.searchParams.delete('code_challenge');
    withoutPkce.searchParams.delete('code_challenge_method');
    const callback = await server.driveConsent(withoutPkce.href);
    expect(callback.searchParams.get('error')).toBe('invalid_request');
  });
});
