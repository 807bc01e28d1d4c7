import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets } from '../support/secret-scan.js';
import {
  CleanupStack,
  type ClientSpec,
  type RunProcess,
  seedGrants,
  snapshotGrants,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const GRANTS = 40;
const CONCURRENCY = 16;
const LATENCY_MS = 1500;
const GRACE_SECONDS = 10;
const WORKER_ENV = workerEnv({
  GRANTKEEPER_CONCURRENCY: String(CONCURRENCY),
  GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '5',
  GRANTKEEPER_SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS),
});

/**
 * SIGTERM while a burst of due grants is in flight at a slow rotating endpoint: the process lets
 * every started refresh commit, exits within its grace period, and the next start refreshes the
 * rest; no grant lost, no spent token presented twice.
 */
describe('SIGTERM during a burst of refreshes', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let dataDir: string;
  const key = testKey();
  const secret = `gk-burst-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    cleanup.add(() => redis.stop());
    endpoint = await startFaultEndpoint();
    cleanup.add(() => endpoint.close());
    dataDir = tempDataDir();
    cleanup.add(() => removeDir(dataDir));
  });

  afterAll(() => cleanup.run());

  it('commits every started refresh, exits within the grace period, and loses no grant', async () => {
    const client: ClientSpec = {
      endpoints: { authorization: endpoint.url.replace(/token$/, 'auth'), token: endpoint.url },
      clientId: 'gk-burst',
      clientSecret: secret,
    };
    const { ids } = await seedGrants({
      dataDir,
      key,
      client,
      count: GRANTS,
      mint: async () => ({ ...endpoint.mintGrant(), expiresIn: 3600 }),
    });
    const configPath = writeRunConfig(dataDir, client);
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: LATENCY_MS });
    const runs: RunProcess[] = [];
    const start = () => {
      const run = startRun({
        cleanup,
        configPath,
        dataDir,
        key,
        redisUrl: redis.url,
        clientSecret: secret,
        env: WORKER_ENV,
      });
      runs.push(run);
      return run;
    };

    const first = start();
    await waitFor(() => endpoint.requests.length >= CONCURRENCY, 'a full burst in flight', 25_000).catch(
      (err: Error) => {
        throw new Error(`${err.message}\nstdout: ${first.cli.stdout()}\nstderr: ${first.cli.stderr()}`);
      },
    );
    const before = await snapshotGrants(dataDir, key);
    const byRefreshToken = new Map(before.map((g) => [g.refreshToken, g.row.id]));
    const exit = await first.terminate();
    const started = new Set(
      endpoint.requests.map((r) => byRefreshToken.get(r.form.refresh_token ?? '')).filter(Boolean),
    );
    const afterStop = await snapshotGrants(dataDir, key);
    const committed = afterStop.filter((g) => g.row.version >= 1);
    const leftLeased = afterStop.filter((g) => g.row.leaseOwner !== null);
    const lostInFlight = [...started].filter(
      (id) => !committed.some((g) => g.row.id === id && endpoint.isAccessTokenValid(g.accessToken)),
    );

    // The rest of the burst after a restart.
    const second = start();
    await waitFor(
      async () => (await snapshotGrants(dataDir, key)).every((g) => g.row.version >= 1),
      'every grant refreshed after the restart',
      30_000,
      250,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout: ${second.cli.stdout()}\nstderr: ${second.cli.stderr()}`);
    });
    const secondExit = await second.terminate();
    const end = await snapshotGrants(dataDir, key);
    const presented = endpoint.requests.map((r) => r.form.refresh_token ?? '');
    const replays = presented.length - new Set(presented).size;
    const invalid = end.filter(
      (g) => g.row.state !== 'active' || !endpoint.isAccessTokenValid(g.accessToken),
    );
    const leaked = leakedSecrets(runs.map((r) => r.cli.stdout() + r.cli.stderr()).join('\n'), [
      secret,
      ...endpoint.issuedTokens(),
    ]);
    const spanMin =
      (Math.max(...endpoint.requests.map((r) => r.at)) - Math.min(...endpoint.requests.map((r) => r.at))) /
      60_000;
    console.info(
      `[faults] SIGTERM burst: ${GRANTS} grants due at once, ${started.size} in flight at SIGTERM; ` +
        `exit ${exit.code} after ${exit.ms} ms (grace ${GRACE_SECONDS * 1000} ms); ` +
        `${committed.length} committed before exit, ${lostInFlight.length} in-flight lost, ${leftLeased.length} left leased; ` +
        `after restart ${end.length - invalid.length}/${GRANTS} kept; replays ${replays}, reuse detections ${endpoint.reuseDetections}; ` +
        `leaked ${leaked.length}; ${Math.round(endpoint.requests.length / Math.max(spanMin, 1 / 60))} requests/min`,
    );

    expect(first.cli.stderr()).toBe('');
    expect(exit.code).toBe(0);
    expect(exit.ms).toBeLessThan(GRACE_SECONDS * 1000);
    expect(first.cli.stdout()).toContain('"msg":"stopped"');
    expect(started.size).toBeGreaterThanOrEqual(CONCURRENCY);
    // Every refresh that had reached the provider was committed before the process exited.
    expect(lostInFlight).toEqual([]);
    expect(committed.length).toBe(started.size);
    expect(leftLeased).toEqual([]);
    expect(secondExit.code).toBe(0);
    expect(replays).toBe(0);
    expect(endpoint.reuseDetections).toBe(0);
    expect(invalid.map((g) => g.row.label)).toEqual([]);
    expect(end).toHaveLength(ids.length);
    expect(leaked).toEqual([]);
  }, 58_000);
});
