import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sleep, testKey, waitFor } from '../support/engine.js';
import type { OidcServer } from '../support/oidc-server.js';
import type { PrivateRedis } from '../support/private-redis.js';
import {
  CleanupStack,
  createApiKey,
  type HoldingGate,
  inactiveAccessTokens,
  isStopped,
  lockDatabase,
  pauseProcess,
  providerClient,
  type RunProcess,
  resumeProcess,
  seedGrants,
  snapshotGrants,
  startHoldingGate,
  startRotatingProvider,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const TIMEOUT_S = 3;
const LEASE_MS = (TIMEOUT_S + 1) * 1000;
/** Scaled down from the 10-minute default, but far longer than the lease. */
const GRACE_S = 30;
const WORKER_ENV = workerEnv({
  GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: String(TIMEOUT_S),
  GRANTKEEPER_IN_DOUBT_GRACE_SECONDS: String(GRACE_S),
  GRANTKEEPER_CONCURRENCY: '4',
});

/**
 * Invariant 2 against two real processes and oidc-provider rotating the refresh token on every use
 * with reuse detection (a replayed refresh token revokes the grant). Each scenario pauses or
 * skews one process at the moment that matters and counts reuse detections: there must be none.
 */
describe('the fenced lease, with two processes and a provider that revokes on replay', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let dataDir: string;
  const key = testKey();
  const secret = `gk-fence-secret-${randomBytes(8).toString('hex')}`;

  beforeEach(async () => {
    ({ redis, oidc, dataDir } = await startRotatingProvider(cleanup, {
      clientId: 'gk-fence',
      clientSecret: secret,
      accessTokenTtlSec: 60,
    }));
  });

  afterEach(() => cleanup.run());

  /** A client whose token requests go through `gate` when given, grants seeded due in 2 s. */
  async function prepare(count: number, gate?: HoldingGate) {
    const { client, consent } = await providerClient(oidc, 'gk-fence', secret, gate?.url);
    const { ids } = await seedGrants({
      dataDir,
      key,
      client,
      count,
      mint: (i) => consent(`fence-user-${i}-${randomBytes(3).toString('hex')}`),
      dueAt: () => Date.now() + 2000,
    });
    return { ids, configPath: writeRunConfig(dataDir, client) };
  }

  const worker = (configPath: string, env: Record<string, string> = {}, command: 'run' | 'serve' = 'run') =>
    startRun({
      cleanup,
      configPath,
      dataDir,
      key,
      redisUrl: redis.url,
      clientSecret: secret,
      env: { ...WORKER_ENV, ...env },
      command,
    });

  async function gate(holdMs: number): Promise<HoldingGate> {
    const g = await startHoldingGate(oidc.tokenEndpoint, holdMs);
    cleanup.add(() => g.close());
    return g;
  }

  /** The outcome every scenario must show: no replay, nothing revoked, every grant alive. */
  async function expectGrantsKept(ids: string[]): Promise<void> {
    const end = await snapshotGrants(dataDir, key);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect(oidc.counters.grantsRevoked).toBe(0);
    expect(end.map((g) => g.row.state)).toEqual(ids.map(() => 'active'));
    expect(await inactiveAccessTokens((t) => oidc.introspect(t), end)).toEqual([]);
  }

  it('a holder paused between claim and send past its lease does not send once it resumes', async () => {
    const { ids, configPath } = await prepare(1);
    const paused = worker(configPath, { GRANTKEEPER_FAULT_POINTS: 'stop-after-claim' });
    await waitFor(() => isStopped(paused.pid), 'the first process to stop after its claim', 25_000, 100);
    const pausedAt = Date.now();
    const other = worker(configPath);
    // The other process takes the job once BullMQ sees it stalled, and the lease has run out by then.
    await waitFor(
      async () => ((await snapshotGrants(dataDir, key))[0]?.row.version ?? 0) >= 1,
      'the other process to refresh the grant',
      30_000,
      250,
    );
    expect(Date.now() - pausedAt).toBeGreaterThan(LEASE_MS);
    const refreshes = oidc.counters.refreshes;
    resumeProcess(paused.pid);
    await waitFor(
      () =>
        paused.logs().some((l) => String(l.msg).startsWith('refresh not sent')) ||
        oidc.counters.reuseDetected > 0,
      'the resumed process to give up its stale claim',
      15_000,
    );
    console.info(
      `[faults] paused ${Date.now() - pausedAt} ms after claim: ${oidc.counters.refreshes - refreshes} requests after resume, ` +
        `reuse detections ${oidc.counters.reuseDetected}`,
    );
    expect(oidc.counters.refreshes).toBe(refreshes);
    await expectGrantsKept(ids);
    expect(other.running() && paused.running()).toBe(true);
  }, 90_000);

  it('a holder paused after sending, past its lease but inside the grace, still stores the answer; nobody replays', async () => {
    const g = await gate(600);
    const { ids, configPath } = await prepare(1, g);
    const holder = worker(configPath);
    // Frozen while its request is on the wire: the provider rotates, the answer waits in the socket.
    await waitFor(() => g.arrivals.length >= 1, 'the request to reach the provider', 25_000, 10);
    pauseProcess(holder.pid);
    const pausedAt = Date.now();
    const other = worker(configPath);
    await other.waitForLog('grantkeeper refresh service running', 25_000);
    // Long past the lease: the other process has the job by now and finds the grant in doubt.
    await sleep(Math.max(0, 14_000 - (Date.now() - pausedAt)));
    expect(await snapshotGrants(dataDir, key)).toMatchObject([{ row: { version: 0 } }]);
    resumeProcess(holder.pid);
    await waitFor(
      async () =>
        ((await snapshotGrants(dataDir, key))[0]?.row.version ?? 0) >= 1 || oidc.counters.reuseDetected > 0,
      'the resumed holder to store its answer',
      15_000,
      250,
    );
    // And past the grace, when the other process's delayed job finds the grant moved on.
    await sleep(Math.max(0, GRACE_S * 1000 + 3000 - (Date.now() - pausedAt)));
    console.info(
      `[faults] paused ${GRACE_S}+ s around a send: ${g.forwarded} requests reached the provider, ` +
        `reuse detections ${oidc.counters.reuseDetected}`,
    );
    expect([...g.forwardedTokens.values()].every((n) => n === 1)).toBe(true);
    await expectGrantsKept(ids);
    expect(holder.logs().some((l) => l.msg === 'grant refreshed')).toBe(true);
  }, 120_000);

  it('a process whose clock runs 20 s ahead never takes a lease that is still held', async () => {
    // Answers take 8 s, inside a 13 s lease: the skewed process asks while they are held, when by
    // its own clock the lease ran out 7 s ago.
    const g = await gate(8000);
    const { ids, configPath } = await prepare(3, g);
    const apiKey = await createApiKey(dataDir, key);
    const slow = { GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '12' };
    const skewed = worker(configPath, { ...slow, GRANTKEEPER_FAULT_CLOCK_OFFSET_MS: '20000' }, 'serve');
    const url = await skewed.apiUrl();
    const honest = worker(configPath, slow);
    await waitFor(() => g.arrivals.length >= 3, 'every grant on the wire', 25_000, 20);
    // Readers of the skewed process force a refresh of each grant (as after a 401).
    const answers = await Promise.all(
      ids.map(async (id) => {
        const res = await fetch(`${url}/v1/grants/${id}/token`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ force: true }),
        });
        return { status: res.status, body: (await res.json()) as { refreshed?: boolean } };
      }),
    );
    console.info(
      `[faults] clock 20 s ahead: ${answers.filter((a) => a.status === 200).length}/3 reads answered, ` +
        `${g.forwarded} requests reached the provider, reuse detections ${oidc.counters.reuseDetected}`,
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    // The honest holder's answers, not requests of the skewed process's own.
    expect(g.arrivals).toHaveLength(3);
    expect([...g.forwardedTokens.values()].every((n) => n === 1)).toBe(true);
    await expectGrantsKept(ids);
    expect(honest.running()).toBe(true);
  }, 90_000);

  it('a database lock held past the lease while answers are held: the other process waits, nobody replays', async () => {
    const g = await gate(1500);
    const { ids, configPath } = await prepare(4, g);
    const apiKey = await createApiKey(dataDir, key);
    const workers: RunProcess[] = [worker(configPath), worker(configPath)];
    const urls = await Promise.all(workers.map((w) => w.apiUrl()));
    await waitFor(() => g.arrivals.length >= 4, 'every grant on the wire', 25_000, 10);
    // The answers come back into a locked database and are held; the lock outlasts every lease.
    const lock = await lockDatabase(dataDir, LEASE_MS + 4000);
    // Meanwhile both APIs keep asking for fresh tokens of every grant, as busy readers would.
    let reading = true;
    const readers = urls.flatMap((url) =>
      ids.map(async (id) => {
        while (reading) {
          await fetch(`${url}/v1/grants/${id}/token?min_valid=50`, {
            headers: { authorization: `Bearer ${apiKey}` },
          })
            .then((r) => r.body?.cancel())
            .catch(() => {});
          await sleep(50);
        }
      }),
    );
    await lock.released;
    await waitFor(
      async () =>
        (await snapshotGrants(dataDir, key)).every((s) => s.row.version >= 1) ||
        oidc.counters.reuseDetected > 0,
      'every held answer stored',
      20_000,
      250,
    );
    await sleep(2000);
    reading = false;
    await Promise.all(readers);
    console.info(
      `[faults] lock past the lease with held answers: ${g.forwarded} requests reached the provider, ` +
        `reuse detections ${oidc.counters.reuseDetected}`,
    );
    expect([...g.forwardedTokens.values()].every((n) => n === 1)).toBe(true);
    await expectGrantsKept(ids);
    expect(
      workers.some((w) =>
        w.logs().some((l) => String(l.msg).startsWith('new tokens received but the database refused')),
      ),
    ).toBe(true);
  }, 90_000);
});
