import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onConsentSaved } from '../../jobs/alert-monitor.js';
import { enqueueAlert, webhookTargetId } from '../../jobs/alert-queue.js';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { configSchema } from '../../src/config/config-schema.js';
import type { Grant } from '../../src/grants/grant.js';
import { createLogger } from '../../src/log/logger.js';
import { SIGNATURE_HEADER, verifyWebhookSignature } from '../../src/notify/webhook-signature.js';
import { type ProviderProfile, resolveProvider } from '../../src/oauth/providers.js';
import type { TokenEndpointTarget } from '../../src/oauth/token-client.js';
import { FORCE_COALESCE_MS } from '../../src/refresh/access-token-reader.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  sleep,
  startEngine,
  tempDataDir,
  testKey,
  waitFor,
} from '../support/engine.js';
import { consentTokens } from '../support/oidc-consent.js';
import { type OidcServer, revokeRefreshToken, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { metricValue, parsePrometheus } from '../support/prometheus.js';
import { leakedSecrets } from '../support/secret-scan.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const REDIRECT_URI = 'http://127.0.0.1:53682/callback';
const WEBHOOK_SECRET = `whsec-${randomBytes(12).toString('hex')}`;

describe('HTTP API against a running service and oidc-provider', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let receiver: WebhookReceiver;
  let engine: Engine;
  let dataDir: string;
  let base: string;
  let profile: ProviderProfile;
  let target: TokenEndpointTarget;
  let clientRef: string;
  let allKey: string;
  let scopedKey: string;
  let alpha: Grant;
  let beta: Grant;
  const seen = new Set<string>();

  const consent = async (label: string, accountId: string) => {
    const tokens = await consentTokens(oidc, profile, target, REDIRECT_URI, accountId);
    seen.add(tokens.accessToken);
    seen.add(tokens.refreshToken);
    return seedGrant(engine, clientRef, profile, tokens, label);
  };
  const get = (path: string, key?: string, init: RequestInit = {}) =>
    fetch(`${base}${path}`, {
      ...init,
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(init.headers as Record<string, string>),
      },
    });
  const metrics = async () => parsePrometheus(await (await get('/metrics')).text());

  beforeAll(async () => {
    [redis, oidc, receiver] = await Promise.all([
      startPrivateRedis(),
      // Tokens live 60 s: the worker leaves them alone while the test reads.
      startOidcServer({
        accessTokenTtlSec: 60,
        clients: [
          {
            clientId: 'gk-api',
            clientSecret: `gk-api-secret-${randomBytes(8).toString('hex')}`,
            redirectUris: [REDIRECT_URI],
          },
        ],
      }),
      startWebhookReceiver(),
    ]);
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: testKey(),
      config: { webhookUrls: [receiver.url], failingAlertAfter: 2 },
      api: { webhookSecret: WEBHOOK_SECRET, alertRetry: { attempts: 4, baseDelayMs: 100 } },
    });
    base = engine.keeper!.url;
    profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const client = oidc.clients[0]!;
    seen.add(client.clientSecret!);
    const row = await addClient(engine, profile, {
      clientId: client.clientId,
      clientSecret: client.clientSecret!,
    });
    clientRef = row.id;
    target = (await engine.service.app.clients.openById(row.id))!.target;
    alpha = await consent('@alpha', 'alice');
    beta = await consent('@beta', 'bob');
    const keys = engine.service.app.apiKeys;
    allKey = (await issueApiKey(keys, { name: 'all', role: 'admin', now: Date.now() })).key;
    scopedKey = (
      await issueApiKey(keys, { name: 'beta-only', role: 'reader', grantIds: [beta.id], now: Date.now() })
    ).key;
    seen.add(allKey);
    seen.add(scopedKey);
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close(), receiver?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('serves a stored token that the server introspects as active', async () => {
    const res = await get('/v1/grants/@alpha/token', allKey);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as {
      access_token: string;
      grant_id: string;
      refreshed: boolean;
      expires_in: number;
    };
    expect(body).toMatchObject({ grant_id: alpha.id, refreshed: false });
    expect(body.expires_in).toBeGreaterThan(10);
    expect((await oidc.introspect(body.access_token)).active).toBe(true);
  });

  it('refreshes exactly once when min_valid exceeds the remaining life, even for 50 concurrent readers', async () => {
    // Ask for more than is left (at most 55 s) but less than a fresh token's 60 s.
    const left = (await engine.service.app.grants.get(alpha.id))!.grant.accessExpiresAt - Date.now();
    await sleep(Math.max(0, left - 55_000));
    const before = oidc.counters.refreshes;
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => get(`/v1/grants/${alpha.id}/token?min_valid=57`, allKey)),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as Array<{ access_token: string }>;
    expect(new Set(bodies.map((b) => b.access_token)).size).toBe(1);
    expect(oidc.counters.refreshes - before).toBe(1);
    seen.add(bodies[0]!.access_token);
    expect((await oidc.introspect(bodies[0]!.access_token)).active).toBe(true);
    expect(oidc.counters.reuseDetected).toBe(0);
  });

  it.each([
    ['no key', '/v1/grants', undefined, {}, 401, 'unauthorized'],
    ['an unknown key', '/v1/grants', 'gk_not-a-real-key', {}, 401, 'unauthorized'],
    ['a key outside its grants', '/v1/grants/@alpha/token', 'scoped', {}, 403, 'forbidden'],
    ['an unknown grant for a scoped key', '/v1/grants/nobody', 'scoped', {}, 403, 'forbidden'],
    ['an unknown grant', '/v1/grants/nobody/token', 'all', {}, 404, 'not_found'],
    ['a non-numeric min_valid', '/v1/grants/@alpha/token?min_valid=soon', 'all', {}, 400, 'bad_request'],
    ['a negative min_valid', '/v1/grants/@alpha/token?min_valid=-5', 'all', {}, 400, 'bad_request'],
    ['an unknown parameter', '/v1/grants/@alpha/token?minValid=5', 'all', {}, 400, 'bad_request'],
    [
      'a bad mode',
      '/v1/grants/@alpha/mode',
      'all',
      { method: 'PUT', body: '{"mode":"lazy"}' },
      400,
      'bad_request',
    ],
    [
      'malformed JSON',
      '/v1/grants/@alpha/mode',
      'all',
      { method: 'PUT', body: '{"mode":' },
      400,
      'bad_request',
    ],
    ['an unknown route', '/v2/grants', 'all', {}, 404, 'not_found'],
  ] as const)('answers %s with JSON {error, message}', async (_what, path, who, init, status, error) => {
    const key = who === 'all' ? allKey : who === 'scoped' ? scopedKey : who;
    const res = await get(path, key, {
      ...init,
      ...('body' in init ? { headers: { 'content-type': 'application/json' } } : {}),
    });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe(error);
    expect(typeof body.message).toBe('string');
    expect(body.message).not.toContain('@alpha');
  });

  it('lets a scoped key read its own grant and lists only that one', async () => {
    expect((await get('/v1/grants/@beta/token', scopedKey)).status).toBe(200);
    const list = (await (await get('/v1/grants', scopedKey)).json()) as { grants: Array<{ id: string }> };
    expect(list.grants.map((g) => g.id)).toEqual([beta.id]);
    const one = (await (await get(`/v1/grants/${beta.id}`, scopedKey)).json()) as Record<string, unknown>;
    expect(one).toMatchObject({ id: beta.id, state: 'active', mode: 'eager' });
    expect(JSON.stringify(one)).not.toMatch(/sealed|lease|access_token"/);
  });

  it('forces a refresh only by POST: a GET with force=true is refused and refreshes nothing', async () => {
    const before = oidc.counters.refreshes;
    const refused = await get('/v1/grants/@beta/token?force=true', scopedKey);
    expect(refused.status).toBe(400);
    const error = (await refused.json()) as { error: string; message: string };
    expect(error.error).toBe('bad_request');
    expect(error.message).toMatch(/POST \/v1\/grants\/\{id\}\/token/);
    expect(oidc.counters.refreshes).toBe(before);

    const post = (key: string, body?: unknown) =>
      get('/v1/grants/@beta/token', key, {
        method: 'POST',
        ...(body === undefined
          ? {}
          : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      });
    // Without force (or without a body) the POST is the same read as the GET: no provider call.
    const stored = (await (await post(scopedKey)).json()) as { access_token: string; refreshed: boolean };
    expect(stored.refreshed).toBe(false);
    expect((await post(scopedKey, { min_valid: 5 })).status).toBe(200);
    expect(oidc.counters.refreshes).toBe(before);

    // A reader may force its own grant (a token read after a 401), not another one.
    const forced = await post(scopedKey, { force: true });
    expect(forced.status).toBe(200);
    expect(forced.headers.get('cache-control')).toBe('no-store');
    const body = (await forced.json()) as { access_token: string; refreshed: boolean; grant_id: string };
    expect(body).toMatchObject({ grant_id: beta.id, refreshed: true });
    expect(body.access_token).not.toBe(stored.access_token);
    seen.add(body.access_token);
    expect(oidc.counters.refreshes - before).toBe(1);
    expect((await oidc.introspect(body.access_token)).active).toBe(true);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect((await get('/v1/grants/@alpha/token', scopedKey, { method: 'POST' })).status).toBe(403);
    for (const bad of [{ force: 'true' }, { min_valid: -1 }, { force: true, extra: 1 }]) {
      expect((await post(scopedKey, bad)).status).toBe(400);
    }
    expect(oidc.counters.refreshes - before).toBe(1);
  });

  it('switches a grant to keepalive, which moves its next refresh out to the keep-alive deadline', async () => {
    // A reader may not switch it, even for its own grant.
    const byReader = await get('/v1/grants/@beta/mode', scopedKey, {
      method: 'PUT',
      body: JSON.stringify({ mode: 'keepalive' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(byReader.status).toBe(403);
    expect((await engine.service.app.grants.get(beta.id))!.grant.mode).toBe('eager');
    const put = (mode: string) =>
      get('/v1/grants/@beta/mode', allKey, {
        method: 'PUT',
        body: JSON.stringify({ mode }),
        headers: { 'content-type': 'application/json' },
      });
    const before = (await engine.service.app.grants.get(beta.id))!.grant;
    const keepalive = (await (await put('keepalive')).json()) as { mode: string; next_refresh_at: string };
    expect(keepalive.mode).toBe('keepalive');
    expect(Date.parse(keepalive.next_refresh_at)).toBeGreaterThan(before.accessExpiresAt + 86_400_000);
    const eager = (await (await put('eager')).json()) as { mode: string; next_refresh_at: string };
    expect(eager.mode).toBe('eager');
    expect(Date.parse(eager.next_refresh_at)).toBeLessThan(before.accessExpiresAt);
  });

  it('publishes /metrics in Prometheus format whose counters move on success and failure', async () => {
    const attempts = (samples: Awaited<ReturnType<typeof metrics>>, outcome: string) =>
      metricValue(samples, 'grantkeeper_refresh_attempts_total', { provider: 'oidc', outcome });
    // Forced refreshes right after a refresh answer from it; these must reach the provider.
    const pastCoalescing = async (id: string) =>
      sleep(
        Math.max(
          0,
          ((await engine.service.app.grants.get(id))!.grant.lastRefreshedAt ?? 0) +
            FORCE_COALESCE_MS +
            100 -
            Date.now(),
        ),
      );
    await pastCoalescing(alpha.id);
    const m0 = await metrics();
    expect((await get('/v1/grants/@alpha/refresh', allKey, { method: 'POST' })).status).toBe(200);
    const m1 = await metrics();
    expect(attempts(m1, 'refreshed')).toBe(attempts(m0, 'refreshed') + 1);
    expect(
      metricValue(m1, 'grantkeeper_refresh_duration_seconds_count', { outcome: 'refreshed' }),
    ).toBeGreaterThan(0);

    // The user revokes access at the provider; the next refresh is refused for good.
    receiver.failNext(500);
    const refreshToken = (await engine.service.app.grants.get(beta.id))!.tokens.refreshToken();
    expect(await revokeRefreshToken(oidc, refreshToken)).toBe(200);
    await pastCoalescing(beta.id);
    const refused = await get('/v1/grants/@beta/refresh', allKey, { method: 'POST' });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: string }).error).toBe('needs_reconsent');
    expect((await get('/v1/grants/@beta/token?min_valid=1', scopedKey)).status).toBe(409);
    const m2 = await metrics();
    expect(attempts(m2, 'needs_reconsent')).toBe(attempts(m1, 'needs_reconsent') + 1);
    expect(metricValue(m2, 'grantkeeper_grants', { state: 'needs_reconsent' })).toBe(1);
    expect(metricValue(m2, 'grantkeeper_grants', { state: 'active' })).toBe(1);
    expect(metricValue(m2, 'grantkeeper_earliest_access_expiry_seconds')).toBeGreaterThan(0);
    expect(metricValue(m2, 'grantkeeper_earliest_keepalive_deadline_seconds')).toBeGreaterThan(86_400);
    expect(m2.some((s) => s.name === 'grantkeeper_queue_jobs' && s.labels.queue === 'alerts')).toBe(true);
    for (const s of m2) {
      for (const v of Object.values(s.labels)) {
        expect(v).not.toMatch(/@alpha|@beta|g_|gk_/);
      }
    }
  });

  it('sends grant.needs_reconsent once, then grant.recovered after a re-seed, each signed', async () => {
    const events = (type: string) =>
      receiver.received.filter((r) => r.json.type === type && r.json.grant.id === beta.id);
    await waitFor(() => events('grant.needs_reconsent').length > 0, 'the needs_reconsent webhook', 10_000);
    // A few sweeps later (every second here) it has still been sent once.
    await sleep(2500);
    expect(events('grant.needs_reconsent')).toHaveLength(1);
    const m = await metrics();
    expect(
      metricValue(m, 'grantkeeper_alert_deliveries_total', { outcome: 'failed' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      metricValue(m, 'grantkeeper_alert_deliveries_total', {
        event: 'grant.needs_reconsent',
        outcome: 'delivered',
      }),
    ).toBe(1);

    // The operator captures consent again: same label, same id. The seed command's hook queues the
    // recovery at once (the service's sweep would within one reconcile interval).
    const reseeded = await consent('@beta', 'bob');
    expect(reseeded.id).toBe(beta.id);
    await onConsentSaved(
      {
        loaded: {
          config: configSchema.parse({ dataDir, redisUrl: redis.url, webhookUrls: [receiver.url] }),
          secrets: { webhookSecret: WEBHOOK_SECRET },
        },
        grants: engine.service.app.grants,
        serviceState: engine.service.app.serviceState,
        redis: { kind: 'url', url: redis.url },
        logger: createLogger({ level: 'silent' }),
      },
      reseeded,
    );
    await waitFor(() => events('grant.recovered').length > 0, 'the recovered webhook', 10_000);
    await sleep(1500);
    expect(events('grant.recovered')).toHaveLength(1);
    for (const hook of [...events('grant.needs_reconsent'), ...events('grant.recovered')]) {
      const signature = hook.headers[SIGNATURE_HEADER] as string;
      expect(verifyWebhookSignature(WEBHOOK_SECRET, signature, hook.body)).toBe(true);
      expect(verifyWebhookSignature('wrong-secret', signature, hook.body)).toBe(false);
      expect(verifyWebhookSignature(WEBHOOK_SECRET, signature, `${hook.body} `)).toBe(false);
      expect(hook.json.grant).toMatchObject({ id: beta.id, label: '@beta' });
    }
    expect((await get('/v1/grants/@beta/token', scopedKey)).status).toBe(200);
  });

  it('alerts a paused refresh queue once, and its resumption, from every process watching it', async () => {
    const queueEvents = (type: string) => receiver.received.filter((r) => r.json.type === type);
    const queue = engine.service.engine.queue;
    await queue.pause();
    try {
      await waitFor(() => queueEvents('queue.paused').length > 0, 'the queue.paused webhook', 10_000);
    } finally {
      await queue.resume();
    }
    await waitFor(() => queueEvents('queue.resumed').length > 0, 'the queue.resumed webhook', 10_000);
    await sleep(1500);
    expect(queueEvents('queue.paused')).toHaveLength(1);
    expect(queueEvents('queue.resumed')).toHaveLength(1);
    expect(queueEvents('queue.paused')[0]!.json.queue).toEqual({ name: 'refresh', paused: true });
  });

  it('sends nothing for alert jobs it did not make, or whose condition no longer holds', async () => {
    const alerts = engine.keeper!.alertQueue!;
    const before = receiver.received.length;
    const target = webhookTargetId(receiver.url);
    const at = Date.now();
    // Whoever can write to Redis: a well-formed job that was not signed with the webhook secret.
    const forged = await alerts.add('grant.needs_reconsent', {
      event: 'grant.needs_reconsent',
      subject: alpha.id,
      at,
      target,
      mac: 'f'.repeat(64),
    });
    // Signed, but @alpha is not dead: the store says otherwise at delivery time.
    await enqueueAlert(alerts, WEBHOOK_SECRET, { event: 'grant.needs_reconsent', subject: alpha.id, at }, [
      target,
    ]);
    await waitFor(async () => (await forged.getState()) === 'failed', 'the forged job refused', 10_000);
    await waitFor(
      async () =>
        (await alerts.getCompleted()).some(
          (j) => j.data.subject === alpha.id && j.returnvalue === 'no_longer_true',
        ),
      'the stale job dropped',
      10_000,
    );
    expect(receiver.received.slice(before).filter((r) => r.json.grant?.id === alpha.id)).toEqual([]);
  });

  it('retries a grant through the worker on request', async () => {
    const before = (await engine.service.app.grants.get(alpha.id))!.grant.version;
    const res = await get('/v1/grants/@alpha/retry', allKey, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { state: string }).state).toBe('active');
    await waitFor(
      async () => (await engine.service.app.grants.get(alpha.id))!.grant.version > before,
      'the worker refresh',
      10_000,
    );
  });

  it('answers a write the database refuses with 503 storage_unavailable, not an internal error', async () => {
    // Another connection holds the write lock past the service's busy timeout (1 s).
    const locker = new Database(join(dataDir, DB_FILE_NAME));
    try {
      locker.exec('BEGIN IMMEDIATE');
      const res = await get('/v1/grants/@beta/retry', allKey, { method: 'POST' });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('2');
      expect(await res.json()).toEqual({
        error: 'storage_unavailable',
        message: 'the database is locked by another writer',
      });
    } finally {
      if (locker.inTransaction) locker.exec('ROLLBACK');
      locker.close();
    }
  }, 15_000);

  it('describes its routes in /openapi.json and answers health and readiness probes', async () => {
    const doc = (await (await get('/openapi.json')).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/grants',
        '/v1/grants/{id}',
        '/v1/grants/{id}/token',
        '/v1/grants/{id}/mode',
      ]),
    );
    for (const method of ['get', 'post']) {
      expect(Object.keys(doc.paths['/v1/grants/{id}/token']![method]!.responses)).toEqual(
        expect.arrayContaining(['200', '400', '401', '403', '404', '409', '422', '503']),
      );
    }
    const post = doc.paths['/v1/grants/{id}/token']!.post as unknown as {
      requestBody: { content: { 'application/json': { schema: { properties: Record<string, unknown> } } } };
    };
    expect(Object.keys(post.requestBody.content['application/json'].schema.properties)).toEqual([
      'min_valid',
      'force',
    ]);
    expect(await (await get('/healthz')).json()).toEqual({ status: 'ok' });
    expect(await (await get('/readyz')).json()).toEqual({
      status: 'ready',
      checks: { db: 'ok', redis: 'ok', worker: 'ok', queue: 'ok', storage: 'ok' },
    });
  });

  it('keeps tokens, keys and secrets out of the logs and webhook bodies', () => {
    expect(seen.size).toBeGreaterThan(5);
    expect(leakedSecrets(engine.logs.join(''), [...seen, WEBHOOK_SECRET])).toEqual([]);
    expect(leakedSecrets(receiver.received.map((r) => r.body).join(''), [...seen, WEBHOOK_SECRET])).toEqual(
      [],
    );
  });
});
