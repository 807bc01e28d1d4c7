import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoreContext } from '../../src/service/store-context.js';
import { sleep, testKey, waitFor } from '../support/engine.js';
import type { OidcServer } from '../support/oidc-server.js';
import type { PrivateRedis } from '../support/private-redis.js';
import {
  CleanupStack,
  inactiveAccessTokens,
  openData,
  providerClient,
  type RunProcess,
  seedGrants,
  snapshotGrants,
  startRotatingProvider,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const GRANTS = 10;
const TTL_SEC = 4;
const RECONCILE_SECONDS = 2;
const OUTAGE_MS = 1000;
const WORKER_ENV = workerEnv({
  GRANTKEEPER_RECONCILE_INTERVAL_SECONDS: String(RECONCILE_SECONDS),
});

/**
 * redis-server killed with -9 under a running worker, then restarted empty (every job lost) and
 * restarted from its AOF (jobs back, possibly minus the last second): the reconciler rebuilds the
 * schedule from the db, and no grant's access token stays expired longer than one reconcile interval.
 */
describe('redis-server killed and restarted under a running worker', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let dataDir: string;
  let worker: RunProcess;
  let watch: StoreContext;
  const key = testKey();
  const secret = `gk-redis-secret-${randomBytes(8).toString('hex')}`;
  /** Longest time any grant's stored access token was past its expiry, per phase. */
  const worstMiss = new Map<string, number>();
  let phase = 'steady';
  let sampler: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    ({ redis, oidc, dataDir } = await startRotatingProvider(cleanup, {
      clientId: 'gk-redis',
      clientSecret: secret,
      accessTokenTtlSec: TTL_SEC,
      redisPersistence: true,
    }));
    const { client, consent } = await providerClient(oidc, 'gk-redis', secret);
    await seedGrants({
      dataDir,
      key,
      client,
      count: GRANTS,
      mint: (i) => consent(`redis-user-${i}`),
      // Spread over the first 2 s, as grants consented at different times would be.
      dueAt: (i) => Date.now() + (i * 2000) / GRANTS,
    });
    const configPath = writeRunConfig(dataDir, client);
    worker = startRun({
      cleanup,
      configPath,
      dataDir,
      key,
      redisUrl: redis.url,
      clientSecret: secret,
      env: WORKER_ENV,
    });
    await worker.waitForLog('grantkeeper refresh service running', 25_000);
    watch = await openData(dataDir, key);
    cleanup.add(() => watch.close());
    // Every grant refreshed once by the worker before any fault.
    await waitFor(
      async () => (await watch.grants.list()).every((g) => g.version >= 1),
      'a first refresh of every grant',
      15_000,
    );
    sampler = setInterval(() => {
      const now = Date.now();
      const sampledPhase = phase;
      void watch.grants.list().then(
        (list) => {
          for (const g of list) {
            const miss = now - g.accessExpiresAt;
            if (miss > (worstMiss.get(sampledPhase) ?? 0)) worstMiss.set(sampledPhase, miss);
          }
        },
        () => {},
      );
    }, 100);
    cleanup.add(() => clearInterval(sampler));
  }, 45_000);

  afterAll(() => cleanup.run());

  /** Kills redis, restarts it, then watches two token lifetimes go by. */
  async function crashRedis(name: string, keepData: boolean) {
    await sleep(2000);
    phase = name;
    const refreshesBefore = oidc.counters.refreshes;
    const versions = new Map((await watch.grants.list()).map((g) => [g.id, g.version]));
    const crashedAt = Date.now();
    redis.kill();
    // Down long enough for some grants to come due meanwhile (a token's headroom is ~1.2 s).
    await sleep(OUTAGE_MS);
    await redis.restart({ keepData });
    const downMs = Date.now() - crashedAt;
    // Every grant must be refreshed at least twice more: the schedule is really rebuilt.
    await waitFor(
      async () => (await watch.grants.list()).every((g) => g.version >= (versions.get(g.id) ?? 0) + 2),
      `two refreshes of every grant after the ${name} restart`,
      20_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout: ${worker.cli.stdout().slice(-4000)}`);
    });
    await sleep(TTL_SEC * 1000);
    const tookMs = Date.now() - crashedAt;
    const end = await snapshotGrants(dataDir, key);
    const inactive = await inactiveAccessTokens((t) => oidc.introspect(t), end);
    const miss = worstMiss.get(name) ?? 0;
    console.info(
      `[faults] redis ${name}: down ${downMs} ms; worst expiry miss ${Math.max(0, miss)} ms ` +
        `(bound ${RECONCILE_SECONDS * 1000} ms); kept ${end.filter((g) => g.row.state === 'active').length}/${GRANTS}; ` +
        `reuse detections ${oidc.counters.reuseDetected}, revocations ${oidc.counters.grantsRevoked}; ` +
        `${Math.round(((oidc.counters.refreshes - refreshesBefore) * 60_000) / tookMs)} requests/min`,
    );
    expect(miss).toBeLessThanOrEqual(RECONCILE_SECONDS * 1000);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect(oidc.counters.grantsRevoked).toBe(0);
    expect(end.map((g) => g.row.state)).toEqual(end.map(() => 'active'));
    expect(inactive).toEqual([]);
    expect(worker.running()).toBe(true);
  }

  it('rebuilds the schedule after redis restarts empty', () => crashRedis('restarted-empty', false), 30_000);

  it('carries on after redis restarts from its AOF', () => crashRedis('restarted-from-aof', true), 30_000);

  it('never missed an expiry before the faults either', () => {
    expect(worstMiss.get('steady') ?? 0).toBeLessThanOrEqual(RECONCILE_SECONDS * 1000);
  });
});
