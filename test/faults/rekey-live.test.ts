import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenClient } from '../../src/oauth/token-client.js';
import { runCli } from '../support/cli.js';
import { type Engine, removeDir, startEngine, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { CleanupStack, seedGrants, snapshotGrants } from './support.js';

const GRANTS = 150;
const REKEY_RUNS = 3;

/**
 * `grantkeeper rekey` run from another process while a worker keeps rotating grants (3 s tokens,
 * rotation on every use): rekey's write transaction and the worker's commits contend for the db
 * lock, and neither may lose a rotated token or leave a value the new key alone cannot open.
 */
describe('key rotation while the worker is refreshing', () => {
  const cleanup = new CleanupStack();
  const oldKey = testKey();
  const newKey = testKey();
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let ids: string[];

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    cleanup.add(() => redis.stop());
    cleanup.add(() => endpoint.close());
    endpoint.setDefault({ type: 'rotate', expiresIn: 3 });
    dataDir = tempDataDir();
    cleanup.add(() => removeDir(dataDir));
    // Sealed under the old key, as before the rotation started.
    ({ ids } = await seedGrants({
      dataDir,
      key: oldKey,
      client: {
        endpoints: { authorization: endpoint.url.replace(/\/token$/, '/auth'), token: endpoint.url },
        clientId: 'rekey-live',
        clientSecret: 'rekey-live-secret',
      },
      count: GRANTS,
      mint: async () => ({ ...endpoint.mintGrant(), expiresIn: 3 }),
      // Spread over 20 s, so the first rekey finds grants the worker has not resealed yet, even when
      // starting the CLI takes seconds on a loaded machine.
      dueAt: (i) => Date.now() + (i % 20) * 1000,
    }));
    // Step 1 of the documented rotation: the new key primary, the old one still known.
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: newKey, previousKeys: oldKey });
    cleanup.add(() => engine.stop());
  });

  afterAll(() => cleanup.run());

  it(`reseals everything in ${REKEY_RUNS} runs under load; every grant stays alive under the new key alone`, async () => {
    const requestsBefore = endpoint.requests.length;
    const runs = [];
    for (let i = 0; i < REKEY_RUNS; i++) {
      runs.push(
        await runCli(['rekey', '--json'], {
          GRANTKEEPER_DATA_DIR: dataDir,
          GRANTKEEPER_KEY: newKey,
          GRANTKEEPER_PREVIOUS_KEYS: oldKey,
        }),
      );
    }
    // Busy meanwhile: the worker refreshed while the runs contended for the lock. How many depends
    // on how long the CLI takes to start, so the worker then runs on until it has done more
    // refreshes than there are grants, still rotating under the new key.
    const duringRekey = endpoint.requests.length - requestsBefore;
    await waitFor(
      () => endpoint.requests.length - requestsBefore > GRANTS,
      'more refreshes than grants',
      30_000,
    );
    await engine.stop();
    const refreshed = endpoint.requests.length - requestsBefore;

    for (const run of runs) expect(run, run.stderr).toMatchObject({ code: 0 });
    const first = JSON.parse(runs[0]!.stdout) as { resealed: { refreshTokens: number } };
    const last = JSON.parse(runs.at(-1)!.stdout) as { resealed: Record<string, number> };
    expect(first.resealed.refreshTokens).toBeGreaterThan(0);
    expect(Object.values(last.resealed).every((n) => n === 0)).toBe(true);
    expect(duringRekey).toBeGreaterThan(0);
    expect(refreshed).toBeGreaterThan(GRANTS);

    const sent = endpoint.requests.map((r) => r.form.refresh_token);
    expect(new Set(sent).size).toBe(sent.length);
    expect(endpoint.reuseDetections).toBe(0);

    // The new key alone opens every grant, and each stored refresh token is the live one.
    const snapshot = await snapshotGrants(dataDir, newKey);
    expect(snapshot.map((g) => g.row.id).sort()).toEqual([...ids].sort());
    const client = new TokenClient({ timeoutMs: 5000 });
    try {
      const target = {
        tokenEndpoint: endpoint.url,
        clientId: 'rekey-live',
        clientSecret: 'rekey-live-secret',
        authMethod: 'client_secret_basic' as const,
      };
      const results = await Promise.allSettled(snapshot.map((g) => client.refresh(target, g.refreshToken)));
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    } finally {
      await client.close();
    }
    expect(endpoint.reuseDetections).toBe(0);
    const waits = engine.logs.filter((l) => /cannot take writes|database refused them/.test(l)).length;
    console.log(
      `[faults] rekey-live: ${REKEY_RUNS} rekey runs (first resealed ${first.resealed.refreshTokens} refresh tokens) during ${duringRekey} refreshes (${refreshed} in all) of ${GRANTS} grants; ${waits} lock waits; kept ${GRANTS}/${GRANTS}; reuse detections 0`,
    );
  }, 90_000);
});
