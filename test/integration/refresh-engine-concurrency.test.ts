import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

describe('one refresh in flight per grant, across two workers and Redis loss', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let dataDir: string;
  let engines: Engine[];
  let clientRef: string;

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    const key = testKey();
    // Two engines on one db and one Redis: two worker processes in all but the process boundary.
    const first = await startEngine({ redisUrl: redis.url, dataDir, key });
    const second = await startEngine({ redisUrl: redis.url, dataDir, key });
    engines = [first, second];
    clientRef = (
      await addClient(first, testProfile(endpoint.url), {
        clientId: 'gk-client',
        clientSecret: 's3cret-x',
      })
    ).id;
  });

  afterAll(async () => {
    await Promise.all((engines ?? []).map((e) => e.stop()));
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const grants = () => engines[0]!.service.app.grants;

  it('sends exactly one token request per version under a burst of forced refreshes', async () => {
    // Slow answers widen the window in which a second claim could sneak in.
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: 150 });
    const seeded = await seedGrant(engines[0]!, clientRef, testProfile(endpoint.url), {
      ...endpoint.mintGrant(),
      expiresIn: 3600,
    });
    for (let round = 0; round < 5; round++) {
      const current = (await grants().get(seeded.id))!.grant;
      // 20 jobs for the same version through both workers' queue, plus on-demand refreshes from both.
      await engines[round % 2]!.service.engine.queue.addBulk(
        Array.from({ length: 20 }, (_, i) => ({
          name: 'refresh',
          data: { grantId: seeded.id, version: current.version },
          opts: { jobId: `burst-${round}-${i}`, removeOnComplete: true, removeOnFail: true },
        })),
      );
      const direct = await Promise.all(
        engines.flatMap((e) =>
          Array.from({ length: 5 }, () =>
            e.service.engine.refresher.refresh(seeded.id, current.version, 'forced'),
          ),
        ),
      );
      expect(direct.filter((r) => r.status === 'refreshed').length).toBeLessThanOrEqual(1);
      await waitFor(
        async () => ((await grants().get(seeded.id))?.grant.version ?? 0) > current.version,
        'the version to move on',
      );
    }
    const sentTokens = endpoint.requests.map((r) => r.form.refresh_token);
    expect(new Set(sentTokens).size).toBe(sentTokens.length);
    expect(endpoint.reuseDetections).toBe(0);
    const { grant: final, tokens: finalTokens } = (await grants().get(seeded.id))!;
    expect(final.state).toBe('active');
    expect(final.version).toBeGreaterThanOrEqual(5);
    expect(endpoint.isAccessTokenValid(finalTokens.accessToken())).toBe(true);
  });

  it('rebuilds the schedule after FLUSHALL and keeps every grant refreshed on time', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3 });
    const profile = testProfile(endpoint.url);
    const seeded = await Promise.all(
      Array.from({ length: 5 }, () =>
        seedGrant(engines[0]!, clientRef, profile, { ...endpoint.mintGrant(), expiresIn: 3 }),
      ),
    );
    const ids = seeded.map((g) => g.id);
    const versions = () => Promise.all(ids.map(async (id) => (await grants().get(id))?.grant.version ?? 0));
    await waitFor(async () => (await versions()).every((v) => v >= 1), 'every grant to refresh once');

    const admin = new Redis(redis.url);
    await admin.flushall();
    admin.disconnect();
    const afterFlush = await versions();
    const flushedAt = Date.now();

    await waitFor(
      async () => (await versions()).every((v, i) => v >= (afterFlush[i] ?? 0) + 2),
      'every grant to refresh twice after the flush',
      20_000,
    );
    // Each refresh came before the previous access token (3 s) had been expired for longer than one
    // reconcile interval (1 s), the flush included; 500 ms of slack for a loaded machine.
    for (const id of ids) {
      const times = (await grants().recentEvents(id, 100))
        .filter((e) => e.outcome === 'refreshed')
        .map((e) => e.at)
        .reverse();
      const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
      expect(Math.max(...gaps)).toBeLessThanOrEqual(3000 + 1000 + 500);
      expect(times.filter((t) => t >= flushedAt).length).toBeGreaterThanOrEqual(2);
    }
    for (const g of await Promise.all(ids.map(async (id) => (await grants().get(id))!.grant))) {
      expect(g.state).toBe('active');
      expect(g.accessExpiresAt).toBeGreaterThan(Date.now() - 1500);
    }
    expect(endpoint.reuseDetections).toBe(0);
  });
});
