import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { RESERVE_FILE_NAME } from '../../src/store/disk-reserve.js';
import { runCli } from '../support/cli.js';
import {
  addClient,
  type Engine,
  seedGrant,
  sleep,
  startEngine,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { fillDisk, mountTmpfs, type Tmpfs, tmpfsUnavailable } from '../support/tmpfs.js';
import { CleanupStack } from './support.js';

const TMPFS_BYTES = 8 * 1024 * 1024;
/** The endpoint holds each answer this long: the disk is filled while requests are in flight. */
const ANSWER_DELAY_MS = 1500;

const unavailable = tmpfsUnavailable();
if (unavailable) console.warn(`[faults] disk-full scenarios skipped: ${unavailable}`);

/**
 * The disk holding the database fills up while refreshes are in flight: the provider has rotated
 * each grant's refresh token, and the new one exists only in memory until the db takes it. Each
 * scenario runs on a tmpfs of its own, filled to the last byte by the test.
 */
describe.skipIf(unavailable !== undefined)('the disk holding the database full', () => {
  const cleanup = new CleanupStack();
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let disk: Tmpfs;

  beforeEach(async () => {
    const mounted = mountTmpfs(TMPFS_BYTES);
    if ('unavailable' in mounted) throw new Error(mounted.unavailable);
    disk = mounted;
    cleanup.add(() => disk.unmount());
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    cleanup.add(() => redis.stop());
    cleanup.add(() => endpoint.close());
    endpoint.setDefault({ type: 'rotate', expiresIn: 3, latencyMs: ANSWER_DELAY_MS });
  });

  afterEach(() => cleanup.run());

  async function engineOn(
    dataDir: string,
    key: string,
    diskReserveMb: number,
    withApi = false,
  ): Promise<Engine> {
    const engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key,
      config: { diskReserveMb },
      ...(withApi ? { api: {} } : {}),
    });
    cleanup.add(() => engine.stop());
    return engine;
  }

  async function seed(engine: Engine, count: number): Promise<string[]> {
    const profile = testProfile(endpoint.url);
    const clientRef = (await addClient(engine, profile, { clientId: 'gk', clientSecret: 'disk-secret' })).id;
    const grants = await Promise.all(
      Array.from({ length: count }, () =>
        seedGrant(engine, clientRef, profile, { ...endpoint.mintGrant(), expiresIn: 2 }),
      ),
    );
    return grants.map((g) => g.id);
  }

  /**
   * No refresh token reached the provider twice, and every grant is alive: a reader gets a token the
   * provider accepts. Read through the reader, not the row: with 3 s tokens and 1.5 s answers, the
   * stored token may lapse while its successor is in flight, and a user's read would wait for it.
   */
  async function expectEveryGrantKept(engine: Engine, ids: string[]): Promise<void> {
    const sent = endpoint.requests.map((r) => r.form.refresh_token);
    expect(new Set(sent).size).toBe(sent.length);
    expect(endpoint.reuseDetections).toBe(0);
    const { grants, database } = engine.service.app;
    for (const id of ids) {
      expect((await grants.get(id))!.grant.state).toBe('active');
      const read = await engine.service.engine.reader.read(id, { minValidSec: 1 });
      expect(endpoint.isAccessTokenValid(read.accessToken)).toBe(true);
    }
    expect(database!.sqlite.pragma('integrity_check', { simple: true })).toBe('ok');
  }

  /** Each grant's version, in the order of `ids`. */
  const versionsOf = (engine: Engine, ids: string[]) =>
    Promise.all(ids.map(async (id) => (await engine.service.app.grants.get(id))!.grant.version));

  const messages = (engine: Engine) =>
    engine.logs.map((l) => JSON.parse(l) as { level: number; msg: string });

  it('stores tokens already received from the released reserve, pauses new refreshes, resumes when space is freed', async () => {
    const dataDir = join(disk.dir, 'data');
    const key = testKey();
    const engine = await engineOn(dataDir, key, 1, true);
    const api = engine.keeper!.url;
    const apiKey = (
      await issueApiKey(engine.service.app.apiKeys, {
        name: 'disk',
        role: 'admin',
        now: Date.now(),
      })
    ).key;
    const probes = async () => ({
      ready: (await (await fetch(`${api}/readyz`)).json()) as { checks: { storage: string } },
      paused: /^grantkeeper_refreshes_paused (\d)$/m.exec(await (await fetch(`${api}/metrics`)).text())?.[1],
    });
    const reservePath = join(dataDir, RESERVE_FILE_NAME);
    expect(statSync(reservePath).size).toBe(1024 * 1024);
    const ids = await seed(engine, 5);
    const { storage, reader } = engine.service.engine;

    await waitFor(() => endpoint.requests.length >= ids.length, 'every grant claimed and sent', 10_000);
    const filler = fillDisk(disk.dir);
    cleanup.add(() => filler.release());
    await waitFor(
      async () => (await versionsOf(engine, ids)).every((v) => v >= 1) || endpoint.reuseDetections > 0,
      'the answers stored',
      10_000,
    );
    expect(endpoint.reuseDetections).toBe(0);
    expect(storage.paused).toBe(true);
    // Operators see it: readiness names it (stored tokens are still served) and a gauge is raised.
    expect(await probes()).toMatchObject({ ready: { checks: { storage: 'disk_full' } }, paused: '1' });
    expect(() => statSync(reservePath)).toThrow();
    expect(messages(engine)).toContainEqual(
      expect.objectContaining({
        level: 50,
        msg: expect.stringMatching(/^the disk holding the database is full/),
      }),
    );

    // Paused: requests sent before the pause are answered and stored from the reserve; then the
    // grants fall due again (3 s tokens) but no request goes out while nothing could be stored, and
    // a reader asking for a fresh token is told why in one line.
    await sleep(ANSWER_DELAY_MS + 500);
    const sentWhileFull = endpoint.requests.length;
    const versionsWhileFull = await versionsOf(engine, ids);
    const pausedAt = Date.now();
    // A minimum of a whole token lifetime: always more than is left, never more than a fresh one has.
    await expect(reader.read(ids[0]!, { minValidSec: 3 })).rejects.toMatchObject({
      code: 'storage_unavailable',
      message: expect.stringMatching(/^the disk holding the database is full/),
    });
    const answer = await fetch(`${api}/v1/grants/${ids[1]}/token?min_valid=3`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    expect(answer.status).toBe(503);
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await answer.json()).toEqual({
      error: 'storage_unavailable',
      message: expect.stringMatching(/^the disk holding the database is full/),
    });
    const status = await runCli(['status', '--json'], {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: key,
      REDIS_URL: redis.url,
      GRANTKEEPER_DISK_RESERVE_MB: '1',
    });
    expect(status.code).toBe(1);
    expect(JSON.parse(status.stdout)).toMatchObject({ disk: { low: true, reserve_held_bytes: 0 } });
    await sleep(Math.max(0, 4000 - (Date.now() - pausedAt)));
    const sentDuringPause = endpoint.requests.length - sentWhileFull;
    const pausedMs = Date.now() - pausedAt;
    expect(sentDuringPause).toBe(0);
    expect(await versionsOf(engine, ids)).toEqual(versionsWhileFull);

    filler.release();
    await waitFor(
      async () => (await versionsOf(engine, ids)).every((v, i) => v > versionsWhileFull[i]!),
      'refreshes resumed',
      15_000,
    );
    expect(storage.paused).toBe(false);
    expect(await probes()).toMatchObject({ ready: { checks: { storage: 'ok' } }, paused: '0' });
    expect(statSync(reservePath).size).toBe(1024 * 1024);
    expect(messages(engine).map((m) => m.msg)).toContain('disk space is back: refreshes resumed');
    await expectEveryGrantKept(engine, ids);
    const held = messages(engine).filter((m) => m.msg === 'held tokens stored').length;
    console.log(
      `[faults] disk full with reserve: filled ${(filler.bytes / 1048576).toFixed(1)} MiB with ${ids.length} answers in flight; ${held} commits refused then stored from the reserve; ${sentDuringPause} requests in ${(pausedMs / 1000).toFixed(1)} s paused; kept ${ids.length}/${ids.length}; replays 0; reuse detections ${endpoint.reuseDetections}`,
    );
  }, 45_000);

  it('without a reserve, holds received tokens past the lease until space returns, and no other worker replays them', async () => {
    const dataDir = join(disk.dir, 'data');
    const key = testKey();
    const first = await engineOn(dataDir, key, 0);
    const second = await engineOn(dataDir, key, 0);
    const ids = await seed(first, 4);
    const held = () => [first, second].flatMap((e) => e.service.engine.refresher.heldGrantIds());

    await waitFor(() => endpoint.requests.length >= ids.length, 'every grant claimed and sent', 10_000);
    const filler = fillDisk(disk.dir);
    cleanup.add(() => filler.release());
    const filledAt = Date.now();
    // The answers arrive, and then longer than the lease (5.5 s) goes by: the leases could not be
    // extended on a full disk, yet nobody may claim these grants and resend spent refresh tokens.
    await sleep(ANSWER_DELAY_MS + first.service.engine.leaseMs + 2000);
    expect(endpoint.requests.length).toBe(ids.length);
    const versionsHeld = await versionsOf(first, ids);
    expect(ids.filter((_id, i) => versionsHeld[i] !== 0)).toEqual([]);
    expect(held().sort()).toEqual([...ids].sort());

    filler.release();
    const heldMs = Date.now() - filledAt;
    await waitFor(
      async () => (await versionsOf(first, ids)).every((v) => v >= 1) || endpoint.reuseDetections > 0,
      'held tokens stored',
      10_000,
    );
    expect(endpoint.reuseDetections).toBe(0);
    expect(held()).toEqual([]);
    // And the grants go on rotating from the stored tokens.
    await waitFor(
      async () => (await versionsOf(first, ids)).every((v) => v >= 2),
      'refreshes resumed',
      15_000,
    );
    await expectEveryGrantKept(first, ids);
    console.log(
      `[faults] disk full without reserve: ${ids.length} answers held ${(heldMs / 1000).toFixed(1)} s by 2 workers (lease ${first.service.engine.leaseMs} ms); kept ${ids.length}/${ids.length}; replays 0; reuse detections ${endpoint.reuseDetections}`,
    );
  }, 45_000);
});
