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
import { lockDatabase } from './support.js';

const LOCK_MS = 7000;

/**
 * Another process holds the database's write lock for a few seconds while grants fall due: the
 * worker waits out its busy timeout, then defers claims and holds received answers instead of
 * failing, and every grant is refreshed exactly once with its tokens intact.
 */
describe('the database locked by another writer', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey() });
  });

  /** Each grant's version (0 for one that is gone), in order. */
  const versionsOf = (seeded: ReadonlyArray<{ id: string }>) =>
    Promise.all(seeded.map(async (g) => (await engine.service.app.grants.get(g.id))?.grant.version ?? 0));

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it(`outlasts a ${LOCK_MS / 1000} s exclusive lock (longer than the busy timeout) and refreshes every grant once`, async () => {
    const profile = testProfile(endpoint.url);
    const clientRef = (await addClient(engine, profile, { clientId: 'gk', clientSecret: 'locked-secret' }))
      .id;
    const seeded = await Promise.all(
      Array.from({ length: 5 }, () =>
        seedGrant(engine, clientRef, profile, { ...endpoint.mintGrant(), expiresIn: 3 }),
      ),
    );
    const lockedAt = Date.now();
    await (await lockDatabase(dataDir, LOCK_MS)).released;
    expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(LOCK_MS);
    const grants = engine.service.app.grants;
    await waitFor(
      async () => (await versionsOf(seeded)).every((v) => v >= 1),
      'every grant refreshed',
      15_000,
    );
    for (const g of seeded) {
      const { grant, tokens } = (await grants.get(g.id))!;
      expect(grant.state).toBe('active');
      expect(endpoint.isAccessTokenValid(tokens.accessToken())).toBe(true);
    }
    const refreshed = endpoint.requests.filter((r) => r.at >= lockedAt).map((r) => r.form.refresh_token);
    expect(new Set(refreshed).size).toBe(refreshed.length);
    expect(endpoint.reuseDetections).toBe(0);
    expect(engine.service.app.database!.sqlite.pragma('integrity_check', { simple: true })).toBe('ok');
  }, 30_000);

  it('holds answers that arrive while the database is locked and stores them once it is free: no replay', async () => {
    const profile = testProfile(endpoint.url);
    const clientRef = (await addClient(engine, profile, { clientId: 'gk2', clientSecret: 'locked-secret' }))
      .id;
    // Each answer takes 1.5 s, so the provider rotates while the lock is held and the commit waits.
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: 1500 });
    const sentBefore = endpoint.requests.length;
    const seeded = await Promise.all(
      Array.from({ length: 4 }, () =>
        seedGrant(engine, clientRef, profile, { ...endpoint.mintGrant(), expiresIn: 2 }),
      ),
    );
    await waitFor(() => endpoint.requests.length >= sentBefore + seeded.length, 'every grant sent', 10_000);
    await (await lockDatabase(dataDir, LOCK_MS)).released;
    const grants = engine.service.app.grants;
    await waitFor(
      async () => (await versionsOf(seeded)).every((v) => v >= 1) || endpoint.reuseDetections > 0,
      'every answer stored',
      20_000,
    );
    expect(endpoint.reuseDetections).toBe(0);
    expect(endpoint.requests.length).toBe(sentBefore + seeded.length);
    for (const g of seeded) {
      const { grant, tokens } = (await grants.get(g.id))!;
      expect(grant.state).toBe('active');
      expect(endpoint.isAccessTokenValid(tokens.accessToken())).toBe(true);
    }
    // The scenario really hit the window it is about.
    expect(engine.logs.some((l) => l.includes('new tokens received but the database refused them'))).toBe(
      true,
    );
    expect(engine.service.app.database!.sqlite.pragma('integrity_check', { simple: true })).toBe('ok');
  }, 40_000);
});
