import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../src/grants/grant.js';
import { createPkcePair } from '../../src/oauth/pkce.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { TokenClient } from '../../src/oauth/token-client.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  waitFor,
} from '../support/engine.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets, readDbFiles } from '../support/secret-scan.js';

const REDIRECT_URI = 'http://127.0.0.1:53682/callback';

describe('end to end against oidc-provider with refresh-token rotation on every use', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let engine: Engine;
  let dataDir: string;
  const seen = new Set<string>();

  beforeAll(async () => {
    [redis, oidc] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 4,
        rotateRefreshToken: true,
        clients: [
          {
            clientId: 'gk-e2e',
            clientSecret: `gk-e2e-secret-${randomBytes(8).toString('hex')}`,
            redirectUris: [REDIRECT_URI],
            authMethod: 'client_secret_basic',
          },
        ],
      }),
    ]);
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey() });
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('keeps a consented grant alive through at least five rotations, every token valid at introspection', async () => {
    const client = oidc.clients[0]!;
    const profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    expect(profile.tokenEndpoint).toBe(oidc.tokenEndpoint);
    const clientRow = await addClient(engine, profile, {
      clientId: client.clientId,
      clientSecret: client.clientSecret!,
      authMethod: 'client_secret_basic',
    });
    const { target } = (await engine.service.app.clients.openById(clientRow.id))!;

    // Consent: authorization code + PKCE, driven over HTTP as the user's browser would.
    const pkce = createPkcePair();
    const state = randomBytes(16).toString('base64url');
    const authorize = new URL(profile.authorizationEndpoint);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: client.clientId,
      redirect_uri: REDIRECT_URI,
      scope: 'openid offline_access',
      prompt: 'consent',
      state,
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
    }).toString();
    const callback = await oidc.driveConsent(authorize.toString());
    expect(callback.searchParams.get('state')).toBe(state);
    const tokenClient = new TokenClient({ timeoutMs: 5000 });
    const tokens = await tokenClient.exchangeCode(target, {
      code: callback.searchParams.get('code')!,
      redirectUri: REDIRECT_URI,
      codeVerifier: pkce.verifier,
    });
    await tokenClient.close();
    expect(tokens.refreshToken).toBeTruthy();
    seen.add(client.clientSecret!);
    seen.add(tokens.accessToken);
    seen.add(tokens.refreshToken!);

    const grant = await seedGrant(engine, clientRow.id, profile, {
      ...tokens,
      refreshToken: tokens.refreshToken!,
    });
    const grants = engine.service.app.grants;

    // Follow the grant: every new version's access token must be live at the server while still fresh.
    let last: Grant = grant;
    while (last.version < 6) {
      const stored = await waitFor(
        async () => {
          const g = await grants.get(grant.id);
          return g && g.grant.version > last.version ? g : undefined;
        },
        `version ${last.version + 1}`,
        10_000,
        20,
      );
      const next = stored.grant;
      const opened = { accessToken: stored.tokens.accessToken(), refreshToken: stored.tokens.refreshToken() };
      seen.add(opened.accessToken);
      seen.add(opened.refreshToken);
      const introspection = await oidc.introspect(opened.accessToken);
      expect(introspection.active).toBe(true);
      expect(introspection.client_id).toBe(client.clientId);
      // Refreshed ahead of the previous token's expiry (4 s lifetime, measured from its request).
      expect(next.lastRefreshedAt!).toBeLessThan(last.accessExpiresAt);
      last = next;
    }
    expect(last.state).toBe('active');
    expect(oidc.counters.refreshes).toBeGreaterThanOrEqual(6);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect(oidc.counters.grantsRevoked).toBe(0);
    const events = await grants.recentEvents(grant.id, 50);
    expect(events.filter((e) => e.outcome === 'refreshed').every((e) => e.rotated)).toBe(true);
    expect(events.some((e) => e.outcome !== 'refreshed')).toBe(false);
  });

  it('leaves no token or client secret in Redis, the logs or the db file', async () => {
    expect(seen.size).toBeGreaterThan(10);
    expect(leakedSecrets(await collectRedisText(redis.url), seen)).toEqual([]);
    expect(leakedSecrets(engine.logs.join(''), seen)).toEqual([]);
    expect(leakedSecrets(readDbFiles(engine.service.app.database!.path), seen)).toEqual([]);
  });
});
