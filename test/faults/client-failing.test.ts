import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreContext } from '../../src/service/store-context.js';
import { runCli } from '../support/cli.js';
import { removeDir, sleep, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';
import {
  CleanupStack,
  openData,
  type RunProcess,
  SECRET_ENV,
  seedGrants,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const GRANTS = 60;
const CONCURRENCY = 16;
const WORKERS = 2;
const WEBHOOK_SECRET = 'failing-webhook-secret';

/**
 * Two `grantkeeper run` processes and one client whose secret the provider no longer accepts:
 * one `client.failing` incident for all its grants, not one alert and one request per grant; an
 * operator's retry after the fix is the probe, and one `client.recovered` ends the incident.
 */
describe('a client whose credentials are refused, across two worker processes', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let hooks: WebhookReceiver;
  let dataDir: string;
  let configPath: string;
  let workers: RunProcess[];
  let store: StoreContext | undefined;
  const key = testKey();
  const secret = `gk-failing-secret-${randomBytes(8).toString('hex')}`;
  const client = {
    endpoints: { authorization: '', token: '' },
    clientId: 'gk-failing',
    clientSecret: secret,
  };
  const refreshTokens = new Set<string>();

  const grantsOf = async (ids: string[]) => {
    store ??= await openData(dataDir, key);
    const app = store;
    return Promise.all(ids.map(async (id) => (await app.grants.get(id))?.grant));
  };
  const ourRequests = (since: number) =>
    endpoint.requests.filter((r) => r.at >= since && refreshTokens.has(r.form.refresh_token ?? ''));
  const byType = (type: string) => hooks.received.filter((h) => h.json.type === type);
  const lines = (msg: RegExp) => workers.flatMap((w) => w.logs()).filter((l) => msg.test(String(l.msg)));

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
    await seedGrants({ dataDir, key, client, count: 0, mint: async () => endpoint.mintGrant() });
    configPath = writeRunConfig(dataDir, client, { webhookUrls: [hooks.url] });
    workers = Array.from({ length: WORKERS }, () =>
      startRun({
        cleanup,
        configPath,
        dataDir,
        key,
        redisUrl: redis.url,
        clientSecret: secret,
        env: workerEnv({
          GRANTKEEPER_CONCURRENCY: String(CONCURRENCY),
          GRANTKEEPER_WEBHOOK_SECRET: WEBHOOK_SECRET,
        }),
      }),
    );
    await Promise.all(workers.map((w) => w.waitForLog('grantkeeper API listening')));
  });

  afterAll(async () => {
    await store?.close();
    await cleanup.run();
  });

  it('one client.failing and few requests for all its grants; a retry after the fix recovers it once', async () => {
    // The client secret was rotated at the provider: every request of this client is refused.
    endpoint.setDefault({
      type: 'status',
      status: 401,
      json: { error: 'invalid_client', error_description: 'client authentication failed' },
    });
    const since = Date.now();
    const { ids } = await seedGrants({
      dataDir,
      key,
      client,
      count: GRANTS,
      mint: async () => {
        const minted = endpoint.mintGrant();
        refreshTokens.add(minted.refreshToken);
        return { ...minted, expiresIn: 3600 };
      },
    });
    await waitFor(
      async () => (await grantsOf(ids)).every((g) => g?.state === 'client_error'),
      'every grant stopped as client_error',
      30_000,
      500,
    );
    await waitFor(() => byType('client.failing').length > 0, 'the client.failing webhook', 20_000);
    // Two sweeps later nothing more came: a per-grant alert would have been queued by now.
    await sleep(2500);
    const refused = ourRequests(since).length;
    // Only requests already admitted before the first refusal was reported reached the provider: at
    // most one per worker slot; every other grant stopped without one.
    expect(refused).toBeGreaterThanOrEqual(1);
    expect(refused).toBeLessThanOrEqual(WORKERS * CONCURRENCY);
    expect(byType('client.failing')).toHaveLength(1);
    expect(byType('client.failing')[0]?.json).toMatchObject({
      type: 'client.failing',
      client: {
        name: 'faulty',
        state: 'failing',
        reason: 'client_error',
        error_code: 'invalid_client',
        grants: { total: GRANTS },
      },
    });
    expect(hooks.received.filter((h) => h.json.type.startsWith('grant.'))).toEqual([]);
    expect(lines(/^client failing/)).toHaveLength(1);
    // Each grant still shows its own state and why.
    const stopped = await grantsOf(ids);
    expect(stopped.every((g) => /invalid_client|client/.test(g?.lastError ?? ''))).toBe(true);

    // status, the API and metrics show the client failing.
    const env = {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: key,
      REDIS_URL: redis.url,
      [SECRET_ENV]: secret,
      GRANTKEEPER_WEBHOOK_SECRET: WEBHOOK_SECRET,
    };
    const status = await runCli(['status', '--json', '--config', configPath], env);
    expect(JSON.parse(status.stdout).clients).toMatchObject([
      { name: 'faulty', condition: { state: 'failing', error_code: 'invalid_client' } },
    ]);
    const metrics = await (await fetch(`${await workers[0]?.apiUrl()}/metrics`)).text();
    expect(metrics).toMatch(/^grantkeeper_client_failing\{client="faulty"\} 1$/m);

    // The operator fixes the client (here: the provider accepts it again) and retries its grants;
    // the first retry is the probe, its answer recovers the client, the rest refresh as usual.
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    const fixedAt = Date.now();
    // Without the webhook secret the command cannot alert the recovery its retry makes: the
    // service's sweep finds the edge in the store and sends it, once.
    const { GRANTKEEPER_WEBHOOK_SECRET: _unset, ...withoutWebhooks } = env;
    const retry = await runCli(
      ['retry', '--all-failed', '--json', '--config', configPath],
      withoutWebhooks,
      120_000,
    );
    expect(retry.code, retry.stdout + retry.stderr).toBe(0);
    await waitFor(
      async () => (await grantsOf(ids)).every((g) => g?.state === 'active' && g.version === 1),
      'every grant refreshed after the retry',
      30_000,
      500,
    );
    expect(ourRequests(fixedAt)).toHaveLength(GRANTS);
    await waitFor(() => byType('client.recovered').length > 0, 'the client.recovered webhook', 20_000);
    await sleep(1500);
    expect(byType('client.recovered')).toHaveLength(1);
    expect(byType('client.recovered')[0]?.json).toMatchObject({
      client: { name: 'faulty', state: 'ok', grants: { total: GRANTS } },
    });
    expect(byType('client.failing')).toHaveLength(1);
    console.info(
      `[faults] client failing: ${GRANTS} grants of one client, ${refused} refused requests (bound ${WORKERS * CONCURRENCY}), one client.failing, one client.recovered`,
    );
  }, 120_000);
});
