import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, testKey, waitFor } from '../support/engine.js';
import type { OidcServer } from '../support/oidc-server.js';
import type { PrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets } from '../support/secret-scan.js';
import {
  CleanupStack,
  envSeconds,
  inactiveAccessTokens,
  providerClient,
  type RunProcess,
  seedGrants,
  snapshotGrants,
  soak,
  startRotatingProvider,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const GRANTS = 12;
const TTL_SEC = 4;
/** CI: 30 s; GK_SOAK=1: 10 minutes; GK_SOAK_SECONDS overrides both. */
const DURATION_SEC = envSeconds('GK_SOAK_SECONDS', soak ? 600 : 30);
const SAMPLE_EVERY_MS = 2000;
const WORKER_ENV = workerEnv({
  GRANTKEEPER_CONCURRENCY: '4',
});

/**
 * Two `grantkeeper run` processes on one db and one Redis, against oidc-provider rotating the
 * refresh token on every use with 4 s access tokens: the lease keeps one refresh in flight per
 * grant, so the provider never sees a spent token again and every stored token is live.
 */
describe('two worker processes against a provider that rotates on every use', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let dataDir: string;
  const key = testKey();
  const secret = `gk-two-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    ({ redis, oidc, dataDir } = await startRotatingProvider(cleanup, {
      clientId: 'gk-two',
      clientSecret: secret,
      accessTokenTtlSec: TTL_SEC,
    }));
  });

  afterAll(() => cleanup.run());

  it(
    `runs ${DURATION_SEC} s with zero reuse detections and every access token live`,
    async () => {
      const { client, consent } = await providerClient(oidc, 'gk-two', secret);
      const { ids } = await seedGrants({
        dataDir,
        key,
        client,
        count: GRANTS,
        mint: (i) => consent(`two-user-${i}`),
        // All due at once: both workers start in a race for the same grants.
        dueAt: () => Date.now() + 3000,
      });
      const configPath = writeRunConfig(dataDir, client);
      const workers: RunProcess[] = [0, 1].map(() =>
        startRun({
          cleanup,
          configPath,
          dataDir,
          key,
          redisUrl: redis.url,
          clientSecret: secret,
          env: WORKER_ENV,
        }),
      );
      await Promise.all(workers.map((w) => w.waitForLog('grantkeeper refresh service running', 25_000)));
      await waitFor(
        async () => (await snapshotGrants(dataDir, key)).every((g) => g.row.version >= 1),
        'a first refresh of every grant',
        15_000,
        250,
      );

      const startedAt = Date.now();
      const refreshesAtStart = oidc.counters.refreshes;
      const seenTokens = new Set<string>();
      let samples = 0;
      const inactive: string[] = [];
      while (Date.now() - startedAt < DURATION_SEC * 1000) {
        const snapshot = await snapshotGrants(dataDir, key);
        for (const g of snapshot) seenTokens.add(g.accessToken).add(g.refreshToken);
        inactive.push(...(await inactiveAccessTokens((t) => oidc.introspect(t), snapshot)));
        samples += snapshot.length;
        if (oidc.counters.reuseDetected > 0) break;
        await sleep(SAMPLE_EVERY_MS);
      }
      const minutes = (Date.now() - startedAt) / 60_000;
      const refreshes = oidc.counters.refreshes - refreshesAtStart;
      const end = await snapshotGrants(dataDir, key);
      inactive.push(...(await inactiveAccessTokens((t) => oidc.introspect(t), end)));
      const perWorker = workers.map((w) => w.logs().filter((l) => l.msg === 'grant refreshed').length);
      const leaked = leakedSecrets(
        [...workers.map((w) => w.cli.stdout() + w.cli.stderr()), await collectRedisText(redis.url)].join(
          '\n',
        ),
        [secret, ...seenTokens],
      );
      // Each grant should be refreshed about once per (TTL - lead): expect at least half of that.
      const expectedPerGrant = (DURATION_SEC * 1000) / (TTL_SEC * 1000);
      console.info(
        `[faults] two workers ${DURATION_SEC} s: ${GRANTS} grants, ${refreshes} refreshes (${perWorker.join(' + ')} by worker), ` +
          `${Math.round(refreshes / minutes)} requests/min; ${samples} introspections, ${inactive.length} inactive; ` +
          `kept ${end.filter((g) => g.row.state === 'active').length}/${GRANTS}; reuse detections ${oidc.counters.reuseDetected}, ` +
          `revocations ${oidc.counters.grantsRevoked}; leaked ${leaked.length}`,
      );

      expect(oidc.counters.reuseDetected).toBe(0);
      expect(oidc.counters.grantsRevoked).toBe(0);
      expect(inactive).toEqual([]);
      expect(end.map((g) => g.row.state)).toEqual(ids.map(() => 'active'));
      expect(refreshes).toBeGreaterThanOrEqual((GRANTS * expectedPerGrant) / 2);
      // No refresh storm either: at most one refresh per grant per half access lifetime.
      expect(refreshes).toBeLessThanOrEqual(GRANTS * expectedPerGrant * 2 + GRANTS);
      // Both processes did real work (BullMQ spreads the jobs).
      for (const n of perWorker) expect(n).toBeGreaterThan(0);
      expect(leaked).toEqual([]);
      expect(workers.every((w) => w.running())).toBe(true);
    },
    (DURATION_SEC + 28) * 1000,
  );
});
