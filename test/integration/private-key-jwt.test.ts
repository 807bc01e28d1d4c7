import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../src/grants/grant.js';
import { resolveProvider } from '../../src/oauth/providers.js';
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
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { consentTokens } from '../support/oidc-consent.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { type RefresherRig, startRefresherRig } from '../support/refresher.js';
import { collectRedisText, leakedSecrets, readDbFiles } from '../support/secret-scan.js';
import { generateSigningKey } from '../support/signing-keys.js';

const REDIRECT_URI = 'http://127.0.0.1:53682/callback';
const key = generateSigningKey('rsa', 'gk-pkjwt-1');
const privateKey = {
  pem: key.pem,
  alg: 'RS256' as const,
  keyId: 'gk-pkjwt-1',
  audience: 'token_endpoint' as const,
};

describe('private_key_jwt client authentication on an authorization-code grant, against oidc-provider', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let engine: Engine;
  let dataDir: string;

  beforeAll(async () => {
    [redis, oidc] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 3,
        clients: [
          {
            clientId: 'gk-pkjwt',
            redirectUris: [REDIRECT_URI],
            authMethod: 'private_key_jwt',
            jwks: { keys: [key.publicJwk] },
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

  it('seeds and refreshes five times, each request accepted on a fresh assertion, none replayed', async () => {
    const profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const clientRow = await addClient(engine, profile, { clientId: 'gk-pkjwt', privateKey });
    expect(clientRow).toMatchObject({ authMethod: 'private_key_jwt', hasSecret: false });
    expect(clientRow.signingKey).toEqual({ alg: 'RS256', keyId: 'gk-pkjwt-1', audience: 'token_endpoint' });
    const { target } = (await engine.service.app.clients.openById(clientRow.id))!;
    const tokens = await consentTokens(oidc, profile, target, REDIRECT_URI);
    const grant = await seedGrant(engine, clientRow.id, profile, tokens);
    const seen = new Set([key.pem, tokens.accessToken, tokens.refreshToken]);

    let last: Grant = grant;
    while (last.version < 6) {
      const stored = await waitFor(
        async () => {
          const g = await engine.service.app.grants.get(grant.id);
          return g && g.grant.version > last.version ? g : undefined;
        },
        `version ${last.version + 1}`,
        10_000,
        20,
      );
      seen.add(stored.tokens.accessToken());
      seen.add(stored.tokens.refreshToken());
      expect((await oidc.introspect(stored.tokens.accessToken())).active).toBe(true);
      last = stored.grant;
    }
    expect(last.state).toBe('active');
    // One assertion per token request (the code exchange and every refresh), each a jti the server
    // had not seen: a reused one would have been refused and counted as an error.
    expect(oidc.counters.refreshes).toBeGreaterThanOrEqual(5);
    expect(oidc.counters.assertionsAccepted).toBe(oidc.counters.refreshes + 1);
    expect(oidc.counters.errors).toEqual({});
    expect(leakedSecrets(await collectRedisText(redis.url), seen)).toEqual([]);
    expect(leakedSecrets(engine.logs.join(''), seen)).toEqual([]);
    expect(leakedSecrets(readDbFiles(engine.service.app.database!.path), seen)).toEqual([]);
  });
});

describe('private_key_jwt through a failed request and its retry', () => {
  let endpoint: FaultEndpoint;
  let rig: RefresherRig;

  beforeAll(async () => {
    endpoint = await startFaultEndpoint();
    rig = await startRefresherRig(endpoint);
  });

  afterAll(async () => {
    await rig?.close();
    await endpoint?.close();
  });

  it('signs a new assertion for the retry: a new jti, the same audience, no secret sent', async () => {
    const client = (await rig.clients.get(rig.clientRef))!;
    await rig.clients.upsert({
      name: client.name,
      profile: client.profile,
      clientId: client.clientId,
      privateKey,
      authMethod: 'private_key_jwt',
      scopes: client.scopes,
      now: Date.now(),
    });
    const grant = await rig.seed();
    endpoint.push({ type: 'status', status: 503 });
    expect((await rig.refresher.refresh(grant.id, grant.version, 'forced')).status).toBe('retrying');
    expect((await rig.refresher.refresh(grant.id, grant.version, 'forced')).status).toBe('refreshed');
    const sent = endpoint.requests.slice(-2);
    const claims = sent.map((r) => decodeJwt(r.form.client_assertion ?? ''));
    expect(
      sent.every(
        (r) => r.form.client_assertion_type === 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      ),
    ).toBe(true);
    expect(
      sent.every((r) => r.headers.authorization === undefined && r.form.client_secret === undefined),
    ).toBe(true);
    expect(claims.map((c) => c.aud)).toEqual([endpoint.url, endpoint.url]);
    expect(claims[0]?.jti).toBeTruthy();
    expect(claims[0]?.jti).not.toBe(claims[1]?.jti);
  });
});
