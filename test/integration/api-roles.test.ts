import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import type { Grant } from '../../src/grants/grant.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
} from '../support/engine.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

/** What a reader key may reach: its grants' tokens and views; never the dashboard or a write route. */
describe('API key roles', () => {
  let redis: PrivateRedis;
  let receiver: WebhookReceiver;
  let engine: Engine;
  let dataDir: string;
  let base: string;
  let mine: Grant;
  let other: Grant;
  let adminKey: string;
  let readerKey: string;

  const call = (key: string, path: string, init: RequestInit & { json?: unknown } = {}) => {
    const { json, ...rest } = init;
    return fetch(`${base}${path}`, {
      ...rest,
      headers: {
        authorization: `Bearer ${key}`,
        ...(json === undefined ? {} : { 'content-type': 'application/json' }),
        ...(rest.headers as Record<string, string>),
      },
      ...(json === undefined ? {} : { body: JSON.stringify(json) }),
    });
  };
  const grantRow = async (id: string) => (await engine.service.app.grants.get(id))!.grant;
  const alertJobs = async () => {
    const queue = engine.keeper!.alertQueue!;
    return Object.values(await queue.getJobCounts()).reduce((a, b) => a + b, 0);
  };

  beforeAll(async () => {
    [redis, receiver] = await Promise.all([startPrivateRedis(), startWebhookReceiver()]);
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: testKey(),
      // Webhooks on: the alerts queue is on the dashboard, and a forged alert would be signed and sent.
      config: { webhookUrls: [receiver.url] },
      api: { webhookSecret: `whsec-${randomBytes(8).toString('hex')}` },
    });
    base = engine.keeper!.url;
    // Nobody listens on the token endpoint: hour-long tokens never need it here.
    const profile = testProfile('http://127.0.0.1:9/token');
    const client = await addClient(engine, profile, { clientId: 'roles', clientSecret: 'roles-secret' });
    const tokens = () => ({
      accessToken: `at-${randomBytes(8).toString('hex')}`,
      refreshToken: `rt-${randomBytes(8).toString('hex')}`,
      expiresIn: 3600,
    });
    mine = await seedGrant(engine, client.id, profile, tokens(), '@mine');
    other = await seedGrant(engine, client.id, profile, tokens(), '@other');
    const keys = engine.service.app.apiKeys;
    adminKey = (await issueApiKey(keys, { name: 'ops', role: 'admin', now: Date.now() })).key;
    readerKey = (
      await issueApiKey(keys, { name: 'bot', role: 'reader', grantIds: [mine.id], now: Date.now() })
    ).key;
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), receiver?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('a reader reads its own grant and nothing else', async () => {
    expect((await call(readerKey, '/v1/grants/@mine/token')).status).toBe(200);
    expect((await call(readerKey, '/v1/grants/@mine')).status).toBe(200);
    expect((await call(readerKey, '/v1/grants/@other/token')).status).toBe(403);
    const list = (await (await call(readerKey, '/v1/grants')).json()) as { grants: Array<{ id: string }> };
    expect(list.grants.map((g) => g.id)).toEqual([mine.id]);
  });

  it('a reader gets 403 on the whole queue dashboard: page, job listing, static assets, pause, add-job', async () => {
    const page = await call(adminKey, '/admin/queues');
    expect(page.status).toBe(200);
    // The board's scripts, relative to its base path.
    const script = /src="([^"]+\.js)"/.exec(await page.text())?.[1];
    expect(script).toMatch(/^static\//);
    const asset = `/admin/queues/${script}`;
    expect((await call(adminKey, asset)).status).toBe(200);

    const refreshJobs = await engine.service.engine.queue.getJobCounts();
    const alertsBefore = await alertJobs();
    const attempts: Array<[string, string, RequestInit & { json?: unknown }]> = [
      ['GET', '/admin/queues', {}],
      ['GET', '/admin/queues/queue/refresh', {}],
      ['GET', asset, {}],
      ['GET', '/admin/queues/api/queues', {}],
      ['GET', '/admin/queues/api/queues?activeQueue=refresh&status=delayed', {}],
      ['GET', '/admin/queues/api/redis/stats', {}],
      ['PUT', '/admin/queues/api/queues/refresh/pause', {}],
      ['PUT', '/admin/queues/api/queues/pause', {}],
      ['PUT', '/admin/queues/api/queues/refresh/obliterate', { json: {} }],
      ['PUT', '/admin/queues/api/queues/refresh/clean/delayed', {}],
      [
        'POST',
        '/admin/queues/api/queues/alerts/add',
        {
          json: {
            name: 'grant.needs_reconsent',
            data: { event: 'grant.needs_reconsent', grantId: mine.id, target: 'forged' },
            options: {},
          },
        },
      ],
    ];
    for (const [method, path, init] of attempts) {
      const res = await call(readerKey, path, { ...init, method });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 403 });
      const body = await res.text();
      expect(JSON.parse(body)).toMatchObject({ error: 'forbidden' });
      expect(body).not.toContain(mine.id);
    }
    expect(await engine.service.engine.queue.isPaused()).toBe(false);
    expect(await engine.service.engine.queue.getJobCounts()).toEqual(refreshJobs);
    expect(await alertJobs()).toBe(alertsBefore);
  });

  it('a reader gets 403 on every write route, even for its own grant, and nothing changes', async () => {
    const before = await grantRow(mine.id);
    for (const [method, path, json] of [
      ['POST', '/v1/grants/@mine/refresh', undefined],
      ['POST', '/v1/grants/@mine/retry', undefined],
      ['PUT', '/v1/grants/@mine/mode', { mode: 'keepalive' }],
      ['POST', '/v1/grants/@other/refresh', undefined],
      ['PUT', '/v1/grants/@other/mode', { mode: 'keepalive' }],
    ] as const) {
      const res = await call(readerKey, path, { method, ...(json ? { json } : {}) });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 403 });
    }
    expect(await grantRow(mine.id)).toEqual(before);
    expect((await grantRow(other.id)).mode).toBe('eager');
  });

  it('an admin reaches every grant, the write routes and the dashboard, whose pause readiness reports', async () => {
    expect((await call(adminKey, '/v1/grants/@other/token')).status).toBe(200);
    const mode = await call(adminKey, '/v1/grants/@other/mode', {
      method: 'PUT',
      json: { mode: 'keepalive' },
    });
    expect(mode.status).toBe(200);
    expect((await grantRow(other.id)).mode).toBe('keepalive');
    // The retry is let through and done at once (it answers the outcome): nobody listens on the token
    // endpoint, so the provider's answer is "unavailable", not a refusal of the key.
    const retried = await call(adminKey, '/v1/grants/@other/retry', { method: 'POST' });
    expect(retried.status).toBe(503);
    expect(((await retried.json()) as { error: string }).error).toBe('unavailable');
    expect((await call(adminKey, '/v1/grants/nobody/retry', { method: 'POST' })).status).toBe(404);

    // An action that does not apply to the grant is the vocabulary's refusal, never a 500.
    const service = await engine.service.app.grants.saveConsent({
      clientRef: other.clientRef,
      label: '@service',
      kind: 'client_credentials',
      accessToken: `at-${randomBytes(8).toString('hex')}`,
      refreshToken: '',
      accessExpiresAt: Date.now() + 3_600_000,
      accessLifetimeMs: 3_600_000,
      refreshTokenUsedAt: Date.now(),
      nextRefreshAt: Date.now() + 3_000_000,
      now: Date.now(),
    });
    const keepalive = await call(adminKey, `/v1/grants/${service.id}/mode`, {
      method: 'PUT',
      json: { mode: 'keepalive' },
    });
    expect(keepalive.status).toBe(409);
    expect(((await keepalive.json()) as { error: string }).error).toBe('not_applicable');

    const listing = (await (await call(adminKey, '/admin/queues/api/queues')).json()) as {
      queues: Array<{ name: string }>;
    };
    expect(listing.queues.map((q) => q.name).sort()).toEqual(['alerts', 'refresh']);
    const ready = async () => {
      const res = await fetch(`${base}/readyz`);
      return {
        status: res.status,
        body: (await res.json()) as { status: string; checks: { queue: string } },
      };
    };
    expect(await ready()).toMatchObject({ status: 200, body: { checks: { queue: 'ok' } } });
    expect((await call(adminKey, '/admin/queues/api/queues/refresh/pause', { method: 'PUT' })).status).toBe(
      200,
    );
    expect(await engine.service.engine.queue.isPaused()).toBe(true);
    expect(await ready()).toEqual({
      status: 503,
      body: expect.objectContaining({
        status: 'not_ready',
        checks: expect.objectContaining({ queue: 'paused' }),
      }),
    });
    expect((await call(adminKey, '/admin/queues/api/queues/refresh/resume', { method: 'PUT' })).status).toBe(
      200,
    );
    expect(await ready()).toMatchObject({ status: 200, body: { status: 'ready', checks: { queue: 'ok' } } });
  });

  it('marks every HTML page unframeable and every answer unsniffable', async () => {
    for (const path of ['/', '/admin/queues']) {
      const res = await call(adminKey, path);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('x-frame-options')).toBe('DENY');
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    }
    const json = await call(readerKey, '/v1/grants');
    expect(json.headers.get('x-content-type-options')).toBe('nosniff');
    expect(json.headers.get('referrer-policy')).toBe('no-referrer');
  });
});
