import { randomBytes } from 'node:crypto';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, testKey, waitFor } from '../support/engine.js';
import type { OidcServer } from '../support/oidc-server.js';
import type { PrivateRedis } from '../support/private-redis.js';
import { leakedSecrets } from '../support/secret-scan.js';
import {
  CleanupStack,
  createApiKey,
  envSeconds,
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

const GRANTS = 5;
const TTL_SEC = 6;
/** CI: 10 s; GK_SOAK=1: the full minute; GK_OUTAGE_SECONDS overrides both. */
const OUTAGE_SEC = envSeconds('GK_OUTAGE_SECONDS', soak ? 60 : 10);
/** A token answer slower than this counts as the API not serving. */
const ANSWER_LIMIT_MS = 3000;
const WORKER_ENV = workerEnv();

/**
 * Redis out of reach for a while under `grantkeeper run`: the API keeps answering token reads from
 * the db (refreshing on demand when a token runs out, since the worker cannot), and the worker picks
 * the schedule up again by itself once Redis is back.
 */
describe('Redis unreachable while the API serves tokens', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let dataDir: string;
  const key = testKey();
  const secret = `gk-outage-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    ({ redis, oidc, dataDir } = await startRotatingProvider(cleanup, {
      clientId: 'gk-outage',
      clientSecret: secret,
      accessTokenTtlSec: TTL_SEC,
    }));
  });

  afterAll(() => cleanup.run());

  it(
    `serves valid tokens through a ${OUTAGE_SEC} s outage and resumes the schedule after it`,
    async () => {
      const { client, consent } = await providerClient(oidc, 'gk-outage', secret);
      const { ids } = await seedGrants({
        dataDir,
        key,
        client,
        count: GRANTS,
        mint: (i) => consent(`outage-user-${i}`),
        dueAt: () => Date.now() + 3_600_000,
      });
      const apiKey = await createApiKey(dataDir, key);
      const configPath = writeRunConfig(dataDir, client);
      const run: RunProcess = startRun({
        cleanup,
        configPath,
        dataDir,
        key,
        redisUrl: redis.url,
        clientSecret: secret,
        env: WORKER_ENV,
      });
      const api = await run.apiUrl();

      const answers = { ok: 0, failed: [] as string[], slowestMs: 0, inactive: 0, tokens: new Set<string>() };
      const read = async (id: string) => {
        const started = Date.now();
        try {
          const res = await fetch(`${api}/v1/grants/${id}/token?min_valid=1`, {
            headers: { authorization: `Bearer ${apiKey}` },
            signal: AbortSignal.timeout(ANSWER_LIMIT_MS),
          });
          const body = (await res.json()) as { access_token?: string };
          answers.slowestMs = Math.max(answers.slowestMs, Date.now() - started);
          if (res.status !== 200 || !body.access_token) {
            answers.failed.push(`HTTP ${res.status} ${JSON.stringify(body)}`);
            return;
          }
          answers.tokens.add(body.access_token);
          if (!(await oidc.introspect(body.access_token)).active) answers.inactive++;
          else answers.ok++;
        } catch (err) {
          answers.failed.push(
            `${(err as Error).name}: ${(err as Error).message} after ${Date.now() - started} ms`,
          );
        }
      };

      // The API works, then Redis goes away for the outage while clients keep asking.
      await Promise.all(ids.map(read));
      expect(answers.failed).toEqual([]);
      const versionsBefore = new Map(
        (await snapshotGrants(dataDir, key)).map((g) => [g.row.id, g.row.version]),
      );
      const downAt = Date.now();
      redis.kill();
      while (Date.now() - downAt < OUTAGE_SEC * 1000) {
        await Promise.all([...ids.map(read), sleep(500)]);
      }
      const onDemand = (await snapshotGrants(dataDir, key)).filter(
        (g) => g.row.version > (versionsBefore.get(g.row.id) ?? 0),
      ).length;
      await redis.restart({ keepData: true });
      const backAt = Date.now();

      // Nobody reads any more: only the worker can move the grants on now, twice each.
      const resumed = new Map((await snapshotGrants(dataDir, key)).map((g) => [g.row.id, g.row.version]));
      await waitFor(
        async () =>
          (await snapshotGrants(dataDir, key)).every(
            (g) => g.row.version >= (resumed.get(g.row.id) ?? 0) + 2,
          ),
        'the worker refreshing every grant twice after Redis came back',
        30_000,
        250,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nstdout: ${run.cli.stdout().slice(-4000)}`);
      });
      const resumeMs = Date.now() - backAt;
      const end = await snapshotGrants(dataDir, key);
      const leaked = leakedSecrets(run.cli.stdout() + run.cli.stderr(), [
        secret,
        apiKey,
        ...answers.tokens,
        ...end.flatMap((g) => [g.accessToken, g.refreshToken]),
      ]);
      const minutes = (Date.now() - downAt) / 60_000;
      console.info(
        `[faults] redis outage ${OUTAGE_SEC} s: ${answers.ok} token reads served valid, ${answers.failed.length} failed, ` +
          `${answers.inactive} inactive, slowest ${answers.slowestMs} ms; ${onDemand}/${GRANTS} grants refreshed on demand during the outage; ` +
          `worker resumed, two refreshes of every grant ${resumeMs} ms after Redis came back; ` +
          `kept ${end.filter((g) => g.row.state === 'active').length}/${GRANTS}; reuse detections ${oidc.counters.reuseDetected}, ` +
          `revocations ${oidc.counters.grantsRevoked}; leaked ${leaked.length}; ${Math.round(oidc.counters.refreshes / minutes)} requests/min`,
      );

      expect(answers.failed).toEqual([]);
      expect(answers.inactive).toBe(0);
      // At least a read per grant every 2 s of the outage went through.
      expect(answers.ok).toBeGreaterThanOrEqual((GRANTS * OUTAGE_SEC) / 2);
      // The outage outlived every token: serving meant refreshing without Redis.
      expect(onDemand).toBe(GRANTS);
      expect(oidc.counters.reuseDetected).toBe(0);
      expect(oidc.counters.grantsRevoked).toBe(0);
      expect(end.map((g) => g.row.state)).toEqual(ids.map(() => 'active'));
      expect(leaked).toEqual([]);
      expect(run.running()).toBe(true);
    },
    (OUTAGE_SEC + 48) * 1000,
  );
});
