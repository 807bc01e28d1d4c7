import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreContext } from '../../src/service/store-context.js';
import { removeDir, sleep, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { busiestSecond } from '../support/request-times.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';
import {
  CleanupStack,
  openData,
  type RunProcess,
  seedGrants,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const RATE = 20;
const RATE_GRANTS = 100;
const RETRY_AFTER_SEC = 4;
const WORKER_ENV = workerEnv({
  GRANTKEEPER_CONCURRENCY: '16',
});

/**
 * Two `grantkeeper run` processes share one client's pacing through Redis, against the fault
 * endpoint: its rate limit holds across both, a 429 with Retry-After on one grant holds every grant
 * of the client in both, and each incident is one client webhook, not one per grant.
 */
describe('client pacing across two worker processes', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let hooks: WebhookReceiver;
  let dataDir: string;
  let workers: RunProcess[];
  const key = testKey();
  const secret = `gk-pacing-secret-${randomBytes(8).toString('hex')}`;
  const client = { endpoints: { authorization: '', token: '' }, clientId: 'gk-pacing', clientSecret: secret };
  const refreshTokens = new Map<string, string>();

  const seed = async (count: number) => {
    const { ids } = await seedGrants({
      dataDir,
      key,
      client,
      count,
      rateLimit: { requestsPerSecond: RATE, burst: 1 },
      mint: async () => {
        const minted = endpoint.mintGrant();
        refreshTokens.set(minted.refreshToken, '');
        return { ...minted, expiresIn: 3600 };
      },
    });
    return ids;
  };
  // One store handle for the test's polling: opening one per poll blocks this process's event loop,
  // which also runs the fault endpoint, and arrivals it delays get bunched timestamps.
  let store: StoreContext | undefined;
  const versions = async (ids: string[]) => {
    store ??= await openData(dataDir, key);
    const app = store;
    return Promise.all(ids.map(async (id) => (await app.grants.get(id))?.grant));
  };
  const ourRequests = (since: number) =>
    endpoint.requests.filter((r) => r.at >= since && refreshTokens.has(r.form.refresh_token ?? ''));

  beforeAll(async () => {
    [redis, endpoint, hooks] = await Promise.all([
      startPrivateRedis(),
      startFaultEndpoint(),
      startWebhookReceiver(),
    ]);
    cleanup.add(() => redis.stop());
    cleanup.add(() => endpoint.close());
    cleanup.add(() => hooks.close());
    dataDir = tempDataDir();
    cleanup.add(() => removeDir(dataDir));
    client.endpoints = { authorization: endpoint.url.replace(/token$/, 'auth'), token: endpoint.url };
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    // The client exists before the workers start; their config sets its rate.
    await seed(0);
    const configPath = writeRunConfig(dataDir, client, { webhookUrls: [hooks.url] }, { rate: `${RATE}/s` });
    workers = [0, 1].map(() =>
      startRun({
        cleanup,
        configPath,
        dataDir,
        key,
        redisUrl: redis.url,
        clientSecret: secret,
        env: { ...WORKER_ENV, GRANTKEEPER_WEBHOOK_SECRET: 'pacing-webhook-secret' },
      }),
    );
    await Promise.all(workers.map((w) => w.waitForLog('grantkeeper API listening')));
  });

  afterAll(async () => {
    await store?.close();
    await cleanup.run();
  });

  it(`a client limited to ${RATE}/s never exceeds ${RATE} requests in any second across both`, async () => {
    const since = Date.now();
    const ids = await seed(RATE_GRANTS);
    await waitFor(
      async () => (await versions(ids)).every((g) => g?.version === 1 && g.state === 'active'),
      'every grant refreshed',
      60_000,
      500,
    );
    const times = ourRequests(since).map((r) => r.at);
    expect(times).toHaveLength(RATE_GRANTS);
    expect(busiestSecond(times)).toBeLessThanOrEqual(RATE);
    // Both workers did their share: the limit is shared, not one worker doing it all.
    const perWorker = workers.map((w) => w.logs().filter((l) => l.msg === 'grant refreshed').length);
    expect(perWorker.every((n) => n > 0)).toBe(true);
    console.info(
      `[faults] client pacing: ${RATE_GRANTS} refreshes at ${RATE}/s in ${((Math.max(...times) - Math.min(...times)) / 1000).toFixed(1)} s, busiest second ${busiestSecond(times)}, per worker ${perWorker.join('/')}`,
    );
  }, 90_000);

  it('a 429 with Retry-After holds every grant of the client in both workers; one webhook each way', async () => {
    endpoint.setDefault({
      type: 'status',
      status: 429,
      json: { error: 'rate_limited' },
      headers: { 'retry-after': String(RETRY_AFTER_SEC) },
    });
    const since = Date.now();
    const [first] = (await seed(1)) as [string];
    await waitFor(
      async () => (await versions([first]))[0]?.consecutiveFailures === 1,
      "the first grant's 429",
    );
    await sleep(300);
    const rest = await seed(12);
    await sleep(RETRY_AFTER_SEC * 1000 - 1500);
    // Nothing more reached the provider while the client was paused: the others waited, unfailed.
    expect(ourRequests(since)).toHaveLength(1);
    expect((await versions(rest)).every((g) => g?.consecutiveFailures === 0)).toBe(true);

    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    await waitFor(
      async () => (await versions([first, ...rest])).every((g) => g?.version === 1 && g.state === 'active'),
      'every grant refreshed after the pause',
      30_000,
      500,
    );
    const byType = (type: string) => hooks.received.filter((h) => h.json.type === type);
    await waitFor(() => byType('client.recovered').length > 0, 'the client.recovered webhook', 20_000);
    await sleep(1000);
    expect(byType('client.degraded')).toHaveLength(1);
    expect(byType('client.recovered')).toHaveLength(1);
    expect(byType('client.degraded')[0]?.json).toMatchObject({
      type: 'client.degraded',
      client: { name: 'faulty', provider: 'oidc' },
    });
    // No per-grant alert for what was the client's condition.
    expect(hooks.received.filter((h) => h.json.type.startsWith('grant.'))).toEqual([]);
    // One log line each way across both workers.
    const lines = (msg: RegExp) => workers.flatMap((w) => w.logs()).filter((l) => msg.test(String(l.msg)));
    expect(lines(/^client degraded/)).toHaveLength(1);
    expect(lines(/^client recovered/)).toHaveLength(1);
  }, 60_000);
});
