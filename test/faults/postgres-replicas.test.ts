import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, sleep, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { createNetHosts, type NetHosts, netHostsUnavailable } from '../support/net-hosts.js';
import type { OidcServer } from '../support/oidc-server.js';
import {
  type PrivatePostgres,
  postgresUnavailable,
  startPrivatePostgres,
} from '../support/private-postgres.js';
import type { PrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets } from '../support/secret-scan.js';
import { startTcpGate, type TcpGate } from '../support/tcp-gate.js';
import {
  CleanupStack,
  createApiKey,
  envSeconds,
  type GrantSnapshot,
  type HoldingGate,
  inactiveAccessTokens,
  pauseProcess,
  providerClient,
  type RunProcess,
  resumeProcess,
  seedGrants,
  snapshotGrants,
  startHoldingGate,
  startRotatingProvider,
  startRun,
  writeRunConfig,
} from './support.js';

const GRANTS = 12;
const TTL_SEC = 4;
/** How long one replica stays cut off from PostgreSQL; GK_PG_CUT_SECONDS=60 for the full minute. */
const CUT_SEC = envSeconds('GK_PG_CUT_SECONDS', 15);
/** Scaled down from 10 minutes: nobody re-sends a refresh token this long after a lost request. */
const GRACE_SEC = 8;
/** Every token request waits this long at a hop in front of the provider, so some are always in flight. */
const HOP_MS = 300;
const NODE_ENV = {
  GRANTKEEPER_IN_DOUBT_GRACE_SECONDS: String(GRACE_SEC),
  GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '3',
  GRANTKEEPER_LEASE_MARGIN_SECONDS: '1',
  GRANTKEEPER_RECONCILE_INTERVAL_SECONDS: '1',
  GRANTKEEPER_CONCURRENCY: '4',
};
const unavailable = postgresUnavailable();
/** Without root (or ip netns), the replicas are plain processes and the partition a loopback gate. */
const noNetHosts = netHostsUnavailable();

/**
 * Three replicas, as on three machines: each in a network namespace of its own (its own network
 * stack, reaching the shared services only across a bridge) with its own data folder (no shared
 * disk), sharing only a private PostgreSQL and a private Redis, against oidc-provider rotating the
 * refresh token on every use and revoking the grant when a spent one comes back. One replica's route
 * to PostgreSQL goes through a gate the test cuts, as a partition would. Every fault on the issue's
 * list is played in turn while 4 s access tokens keep every grant refreshing.
 */
describe.skipIf(unavailable)('replicas sharing PostgreSQL and Redis, no shared disk', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let postgres: PrivatePostgres;
  let gate: TcpGate;
  let net: NetHosts | undefined;
  let hop: HoldingGate;
  let databaseUrl: string;
  const key = testKey();
  const secret = `gk-replica-secret-${randomBytes(8).toString('hex')}`;

  beforeAll(async () => {
    ({ redis, oidc } = await startRotatingProvider(cleanup, {
      clientId: 'gk-replicas',
      clientSecret: secret,
      accessTokenTtlSec: TTL_SEC,
    }));
    postgres = await startPrivatePostgres();
    cleanup.add(() => postgres.stop());
    databaseUrl = await postgres.createDatabase();
    // Drops a request whose sender went away before it was forwarded, as a lost packet would.
    hop = await startHoldingGate(oidc.tokenEndpoint, HOP_MS);
    cleanup.add(() => hop.close());
    if (noNetHosts) {
      console.info(`[faults] replicas run as processes on loopback: ${noNetHosts}`);
      gate = await startTcpGate(postgres.port);
      cleanup.add(() => gate.close());
    } else {
      const shared = [postgres.port, redis.port, Number(new URL(hop.url).port)];
      const hosts = await createNetHosts(3, shared, [postgres.port]);
      net = hosts;
      cleanup.add(() => hosts.close());
      gate = hosts.gate(0, postgres.port) as TcpGate;
    }
  }, 60_000);

  afterAll(() => cleanup.run());

  it('keeps every grant through a burst, a kill -9, a pause past the lease, a partition and a PostgreSQL restart', async () => {
    const folders = [0, 1, 2].map(() => {
      const dir = tempDataDir();
      cleanup.add(() => removeDir(dir));
      return dir;
    });
    const [seedFolder = ''] = folders;
    const { client, consent } = await providerClient(oidc, 'gk-replicas', secret, hop.url);
    const { ids } = await seedGrants({
      dataDir: seedFolder,
      key,
      client,
      count: GRANTS,
      mint: (i) => consent(`replica-user-${i}`),
      dueAt: () => Date.now() + 2000,
      databaseUrl,
    });
    const apiKey = await createApiKey(seedFolder, key, databaseUrl);
    const viaGate = databaseUrl.replace(`:${postgres.port}/`, `:${gate.port}/`);
    const node = (i: number): RunProcess =>
      startRun({
        cleanup,
        configPath: writeRunConfig(folders[i] ?? '', client),
        dataDir: folders[i] ?? '',
        key,
        redisUrl: redis.url,
        clientSecret: secret,
        env: {
          ...NODE_ENV,
          GRANTKEEPER_DATABASE_URL: i === 0 && !net ? viaGate : databaseUrl,
          ...(net ? { GRANTKEEPER_API_HOST: net.hosts[i]?.address ?? '' } : {}),
        },
        ...(net ? { wrap: net.hosts[i]?.wrap ?? [] } : {}),
      });
    const nodes = [node(0), node(1), node(2)];
    const urls = await Promise.all(nodes.map((n) => n.apiUrl()));
    const snapshot = () => snapshotGrants(seedFolder, key, databaseUrl);
    await waitFor(
      async () => (await snapshot()).every((g) => g.row.version >= 1),
      'a first refresh of every grant',
      20_000,
      250,
    );
    const seen = new Set<string>();
    const inactive: string[] = [];
    const sample = async () => {
      const grants = await snapshot();
      for (const g of grants) seen.add(g.accessToken).add(g.refreshToken);
      inactive.push(...(await inactiveAccessTokens((t) => oidc.introspect(t), grants)));
    };

    // 1. A burst of forced refreshes from every node at once.
    const burst = await Promise.all(
      urls.flatMap((url) =>
        ids.map(async (id) => {
          const res = await fetch(`${url}/v1/grants/${id}/token`, {
            method: 'POST',
            headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ force: true }),
          });
          await res.body?.cancel();
          return res.status;
        }),
      ),
    );
    await sample();

    // 2. A node killed -9 with its requests on the wire. Held past every request timeout, none of
    // them reaches the provider: their grants are in doubt, and refreshed again after the grace.
    hop.holdMs = 4000;
    await sleep(HOP_MS + 200);
    await waitFor(() => hop.held >= 3, 'requests held on the wire', 15_000, 10);
    nodes[2]?.cli.child.kill('SIGKILL');
    await sleep(500);
    hop.holdMs = HOP_MS;
    nodes[2] = node(2);
    await nodes[2].apiUrl();
    await sleep(GRACE_SEC * 1000);
    await sample();

    // 3. A node frozen past its lease (4 s), inside the in-doubt grace, then thawed: its late answers
    // land or are refused, and it sends nothing on a lease it lost.
    const frozen = nodes[1]?.pid ?? 0;
    pauseProcess(frozen);
    await sleep(6000);
    resumeProcess(frozen);
    await sample();

    // 4. A node cut off from PostgreSQL with answers on their way to it: it holds them in memory
    // and they land when the path is back. Slow answers pile up at the hop; with 4 in flight per
    // node at most, 9 held means node 0 has at least one.
    hop.holdMs = 2500;
    await waitFor(() => hop.held >= 9, 'answers on their way to every node', 20_000, 5);
    gate.cut();
    hop.holdMs = HOP_MS;
    for (let t = 0; t < CUT_SEC; t += 3) {
      await sleep(3000);
      await sample();
    }
    gate.restore();
    await sleep(6000);
    await sample();

    // 5. PostgreSQL itself restarted under every node.
    postgres.halt('fast');
    await sleep(3000);
    postgres.start();
    await sleep(8000);
    await sample();
    // Every grant refreshed again after the last fault: nothing was left stuck.
    const afterFaults = new Map((await snapshot()).map((g) => [g.row.id, g.row.version]));
    const refreshedAgain = (g: GrantSnapshot) =>
      g.row.state === 'active' && g.row.version > (afterFaults.get(g.row.id) ?? 0);
    // Generous: on a 2-core machine busy with the rest of the suite, three nodes, their store polls
    // and PostgreSQL's recovery share the CPU. What is stuck is named, without a secret.
    await waitFor(
      async () => (await snapshot()).every(refreshedAgain),
      'every grant refreshed after the last fault',
      90_000,
      500,
    ).catch(async (err: Error) => {
      const stuck = (await snapshot())
        .filter((g) => !refreshedAgain(g))
        .map(({ row }) =>
          JSON.stringify({
            id: row.id,
            state: row.state,
            version: row.version,
            nextRefreshAt: new Date(row.nextRefreshAt).toISOString(),
            leaseUntil: row.leaseUntil,
            lastError: row.lastError,
          }),
        );
      throw new Error(`${err.message}; not refreshed again: ${stuck.join(', ')}`);
    });
    const end = await snapshot();
    inactive.push(...(await inactiveAccessTokens((t) => oidc.introspect(t), end)));
    const logs = nodes.map((n) => n.logs());
    const refreshedBy = logs.map((l) => l.filter((x) => x.msg === 'grant refreshed').length);
    const held = logs[0]?.filter((l) =>
      String(l.msg).startsWith('new tokens received but the database refused'),
    ).length;
    const heldStored = logs[0]?.filter((l) => l.msg === 'held tokens stored').length;
    const leaked = leakedSecrets(
      [...nodes.map((n) => n.cli.stdout() + n.cli.stderr()), await collectRedisText(redis.url)].join('\n'),
      [secret, ...seen],
    );
    console.info(
      `[faults] 3 replicas on PostgreSQL${net ? ', each in its own network namespace' : ''}: ${oidc.counters.refreshes} refreshes (${refreshedBy.join(' + ')} by node), ` +
        `burst ${burst.filter((s) => s === 200).length}/${burst.length} answered, cut ${CUT_SEC} s: ${held} held, ${heldStored} stored after; ` +
        `${[...hop.forwardedTokens.values()].filter((n) => n > 1).length} tokens forwarded twice, reuse detections ${oidc.counters.reuseDetected}, revocations ${oidc.counters.grantsRevoked}, inactive ${inactive.length}, leaked ${leaked.length}`,
    );

    expect([...hop.forwardedTokens.values()].every((n) => n === 1)).toBe(true);
    expect(oidc.counters.reuseDetected).toBe(0);
    expect(oidc.counters.grantsRevoked).toBe(0);
    expect(inactive).toEqual([]);
    expect(end.map((g) => g.row.state)).toEqual(ids.map(() => 'active'));
    expect(burst.every((s) => s === 200)).toBe(true);
    expect(held).toBeGreaterThan(0);
    expect(heldStored).toBe(held);
    for (const n of refreshedBy) expect(n).toBeGreaterThan(0);
    expect(leaked).toEqual([]);
    expect(nodes.every((n) => n.running())).toBe(true);
  }, 240_000);
});

if (unavailable) describe.skip(`replicas on PostgreSQL: skipped, ${unavailable}`, () => {});
