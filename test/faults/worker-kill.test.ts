import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testKey, waitFor } from '../support/engine.js';
import type { OidcServer } from '../support/oidc-server.js';
import type { PrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets } from '../support/secret-scan.js';
import {
  CleanupStack,
  type HoldingGate,
  inactiveAccessTokens,
  providerClient,
  type RunProcess,
  seedGrants,
  snapshotGrants,
  startHoldingGate,
  startRotatingProvider,
  startRun,
  workerEnv,
  writeRunConfig,
} from './support.js';

const GRANTS = 8;
const HOLD_MS = 3000;
/** Scaled down from 10 minutes: nobody re-sends a refresh token this long after a lost request. */
const GRACE_S = 8;
/** Request timeout 5 s + margin 1 s: the lease a killed worker leaves behind lasts 6 s. */
const WORKER_ENV = workerEnv({
  GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '5',
  GRANTKEEPER_IN_DOUBT_GRACE_SECONDS: String(GRACE_S),
});

/**
 * kill -9 of `grantkeeper run` while every grant's refresh is in flight. The requests are held by a
 * slow hop in front of oidc-provider and never reach it (the hop drops a request whose client went
 * away). The restarted worker cannot know that: each grant is in doubt (a request went out, no
 * answer settled it), so it waits the in-doubt grace, then refreshes with the unspent tokens, with
 * no replay and nothing lost.
 */
describe('worker killed with -9 while refreshes are in flight', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let gate: HoldingGate;
  let dataDir: string;
  const key = testKey();
  const secret = `gk-kill-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    ({ redis, oidc, dataDir } = await startRotatingProvider(cleanup, {
      clientId: 'gk-kill',
      clientSecret: secret,
      accessTokenTtlSec: 6,
    }));
    gate = await startHoldingGate(oidc.tokenEndpoint, HOLD_MS);
    cleanup.add(() => gate.close());
  });

  afterAll(() => cleanup.run());

  it('restarts, waits out the in-doubt grace, then keeps every grant alive with no replay', async () => {
    const { client, consent } = await providerClient(oidc, 'gk-kill', secret, gate.url);
    const { ids } = await seedGrants({
      dataDir,
      key,
      client,
      count: GRANTS,
      mint: (i) => consent(`kill-user-${i}`),
    });
    const configPath = writeRunConfig(dataDir, client);
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

    // First worker: every grant is due, so every refresh is held at the gate.
    const first = start();
    await waitFor(() => gate.held === GRANTS, 'every refresh held at the gate', 25_000).catch(
      (err: Error) => {
        throw new Error(`${err.message}\nstdout: ${first.cli.stdout()}\nstderr: ${first.cli.stderr()}`);
      },
    );
    const killedAt = Date.now();
    await first.kill9();
    // The kill landed before any answer: nothing reached the provider.
    expect(gate.forwarded).toBe(0);
    expect(oidc.counters.refreshes).toBe(0);

    const atKill = await snapshotGrants(dataDir, key);
    expect(atKill.map((g) => g.row.version)).toEqual(ids.map(() => 0));
    // Each grant is left leased by the dead worker.
    for (const g of atKill) expect(g.row.leaseUntil).toBeGreaterThan(killedAt);
    // Nobody may send a grant's refresh token again before the grace has passed since it was sent.
    const sentAt = new Map(gate.arrivals.map((a) => [a.refreshToken, a.at]));
    const notBefore = new Map(
      atKill.map((g) => [g.refreshToken, (sentAt.get(g.refreshToken) ?? 0) + GRACE_S * 1000]),
    );

    await waitFor(() => gate.dropped === GRANTS, 'the held requests dropped', HOLD_MS + 5000);
    gate.holdMs = 200;

    // Second worker: takes the grants over and keeps refreshing them (two rotations each).
    const second = start();
    await waitFor(
      async () => (await snapshotGrants(dataDir, key)).every((g) => g.row.version >= 2),
      'two refreshes of every grant after the restart',
      40_000,
      250,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout: ${second.cli.stdout()}\nstderr: ${second.cli.stderr()}`);
    });

    const end = await snapshotGrants(dataDir, key);
    const replays = [...gate.forwardedTokens.values()].filter((n) => n > 1).length;
    const inactive = await inactiveAccessTokens((t) => oidc.introspect(t), end);
    // The retried request for each grant presented the unspent token, after the grace.
    const takeovers = gate.arrivals.filter((a) => a.at > killedAt && notBefore.has(a.refreshToken));
    // The gate's clock and the store's are one machine's; a few ms cover the statement in between.
    const early = takeovers.filter((a) => a.at < (notBefore.get(a.refreshToken) ?? 0) - 50);
    const elapsedMin = (Date.now() - killedAt) / 60_000;

    const secrets = new Set<string>([secret, ...gate.arrivals.map((a) => a.refreshToken)]);
    for (const g of [...atKill, ...end]) secrets.add(g.accessToken).add(g.refreshToken);
    const leaked = leakedSecrets(
      [...runs.map((r) => r.cli.stdout() + r.cli.stderr()), await collectRedisText(redis.url)].join('\n'),
      secrets,
    );
    console.info(
      `[faults] kill -9: ${GRANTS} grants, 1 kill with ${gate.dropped} requests in flight; ` +
        `kept ${end.filter((g) => g.row.state === 'active').length}/${GRANTS}; ` +
        `takeover ${Math.round((Math.min(...takeovers.map((a) => a.at)) - killedAt) / 100) / 10} s after the kill; ` +
        `replays ${replays}, reuse detections ${oidc.counters.reuseDetected}, revocations ${oidc.counters.grantsRevoked}; ` +
        `leaked ${leaked.length}; ${Math.round(gate.forwarded / elapsedMin)} requests/min`,
    );

    expect(replays).toBe(0);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect(oidc.counters.grantsRevoked).toBe(0);
    expect(end.map((g) => g.row.state)).toEqual(ids.map(() => 'active'));
    expect(inactive).toEqual([]);
    expect(takeovers).toHaveLength(GRANTS);
    expect(early).toEqual([]);
    expect(leaked).toEqual([]);
    expect(second.running()).toBe(true);
  }, 58_000);
});
