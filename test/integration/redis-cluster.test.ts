import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CleanupStack,
  createApiKey,
  inactiveAccessTokens,
  providerClient,
  seedGrants,
  snapshotGrants,
  startRotatingOidc,
  startRun,
  writeRunConfig,
} from '../faults/support.js';
import { removeDir, tempDataDir, testKey, waitFor } from '../support/engine.js';
import type { OidcServer } from '../support/oidc-server.js';
import { type PrivateRedisCluster, startPrivateRedisCluster } from '../support/private-redis-cluster.js';

const GRANTS = 6;

/**
 * `grantkeeper run` on a Redis Cluster of three masters, given one node: its queues live under the
 * hash-tagged prefix `{grantkeeper}` (one slot, as BullMQ needs), the reconciler's pipelined checks
 * and every BullMQ script run there, and grants are kept alive against rotating oidc-provider.
 */
describe('grantkeeper run on a Redis Cluster', () => {
  const cleanup = new CleanupStack();
  let cluster: PrivateRedisCluster;
  let oidc: OidcServer;
  const key = testKey();
  const secret = `gk-cluster-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    cluster = await startPrivateRedisCluster();
    cleanup.add(() => cluster.stop());
    oidc = await startRotatingOidc(cleanup, {
      clientId: 'gk-cluster',
      clientSecret: secret,
      accessTokenTtlSec: 4,
    });
  }, 60_000);

  afterAll(() => cleanup.run());

  it('keeps grants alive with every queue key in one hash-tagged slot', async () => {
    const dataDir = tempDataDir();
    cleanup.add(() => removeDir(dataDir));
    const { client, consent } = await providerClient(oidc, 'gk-cluster', secret);
    const { ids } = await seedGrants({
      dataDir,
      key,
      client,
      count: GRANTS,
      mint: (i) => consent(`cluster-user-${i}`),
      dueAt: () => Date.now() + 1000,
    });
    const apiKey = await createApiKey(dataDir, key);
    const run = startRun({
      cleanup,
      configPath: writeRunConfig(dataDir, client),
      dataDir,
      key,
      clientSecret: secret,
      env: {
        GRANTKEEPER_REDIS_CLUSTER_NODES: cluster.seedNode,
        GRANTKEEPER_RECONCILE_INTERVAL_SECONDS: '1',
        GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '3',
        GRANTKEEPER_LEASE_MARGIN_SECONDS: '1',
      },
    });
    const api = await run.apiUrl();
    await waitFor(
      async () => (await snapshotGrants(dataDir, key)).every((g) => g.row.version >= 3),
      'three refreshes of every grant',
      40_000,
      250,
    );
    const forced = await fetch(`${api}/v1/grants/${ids[0]}/token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ force: true }),
    });
    expect(forced.status).toBe(200);
    const ready = await fetch(`${api}/readyz`);
    expect(ready.status).toBe(200);
    const keys = await cluster.keys();
    const queueKeys = keys.filter((k) => k.key.startsWith('{grantkeeper}:'));
    const end = await snapshotGrants(dataDir, key);
    console.info(
      `[cluster] ${oidc.counters.refreshes} refreshes on a 3-master cluster; ${queueKeys.length} queue keys, all on port ${[...new Set(queueKeys.map((k) => k.port))].join(',')}; reuse ${oidc.counters.reuseDetected}`,
    );
    expect(queueKeys.length).toBeGreaterThan(0);
    expect(keys.filter((k) => !k.key.startsWith('{grantkeeper}:'))).toEqual([]);
    expect(new Set(queueKeys.map((k) => k.port)).size).toBe(1);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect(await inactiveAccessTokens((t) => oidc.introspect(t), end)).toEqual([]);
    expect(end.every((g) => g.row.state === 'active')).toBe(true);
    expect((await run.terminate()).code).toBe(0);
  }, 90_000);
});
