import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Reconciler } from '../../jobs/reconciler.js';
import {
  createRefreshQueue,
  REFRESH_QUEUE_NAME,
  type RefreshQueue,
  refreshJobId,
} from '../../jobs/refresh-queue.js';
import { QueueScheduler } from '../../jobs/refresh-scheduler.js';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import type { GrantRepository } from '../../src/grants/ports.js';
import { createLogger } from '../../src/log/logger.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { removeDir, tempDataDir, testProfile, waitFor } from '../support/engine.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

const HOUR = 3600_000;
const key = Buffer.alloc(32, 3);
const sealer = new Sealer(new Keyring({ id: keyIdFor(key), key }));

describe('reconciler', () => {
  let redis: PrivateRedis;
  let connection: Redis;
  let queue: RefreshQueue;
  let store: SqliteStore;
  let dataDir: string;
  let grants: GrantRepository;
  let clientRef: string;
  let now = Date.now();
  const clock = () => now;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    queue = createRefreshQueue(connection, 'gk-reconcile-test');
    dataDir = tempDataDir();
    store = openSqliteStore({ dataDir, sealer });
    grants = store.grants;
    clientRef = (
      await store.clients.upsert({
        name: 'c',
        profile: testProfile('https://id.example/token'),
        clientId: 'id',
        authMethod: 'none',
        scopes: [],
        now,
      })
    ).id;
  });

  afterAll(async () => {
    await queue?.close();
    connection?.disconnect();
    await store?.admin.close();
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  const seed = (label: string, dueIn: number) =>
    grants.saveConsent({
      clientRef,
      label,
      accessToken: 'a',
      refreshToken: 'r',
      accessExpiresAt: now + dueIn + HOUR,
      accessLifetimeMs: HOUR,
      refreshTokenUsedAt: now,
      nextRefreshAt: now + dueIn,
      now,
    });

  const make = () => {
    const scheduler = new QueueScheduler(queue, { horizonMs: HOUR, now: clock });
    const reconciler = new Reconciler(
      grants,
      queue,
      connection,
      scheduler,
      createLogger({ level: 'silent' }),
      {
        intervalMs: 60_000,
        horizonMs: HOUR,
        overdueGraceMs: 60_000,
        now: clock,
      },
    );
    return { scheduler, reconciler };
  };

  it('queues grants as they come within the horizon, once each', async () => {
    const { scheduler, reconciler } = make();
    const later = await seed('later', 2 * HOUR);
    expect(await scheduler.schedule([later])).toBe(0);
    expect(await reconciler.reconcileOnce()).toMatchObject({ added: 0 });
    now += 1.5 * HOUR;
    expect(await reconciler.reconcileOnce()).toMatchObject({ checked: 1, added: 1, revived: 0 });
    expect(await reconciler.reconcileOnce()).toMatchObject({ checked: 1, added: 0, revived: 0 });
    const job = await queue.getJob(refreshJobId(later.id, 0, later.nextRefreshAt));
    expect(job?.data).toEqual({ grantId: later.id, version: 0 });
    expect(job?.name).toBe(later.clientRef);
    expect(await job?.getState()).toBe('delayed');
  });

  it('re-queues an overdue grant whose job ended without the db moving on', async () => {
    const { scheduler, reconciler } = make();
    const grant = await seed('stuck', 0);
    await scheduler.schedule([grant]);
    // A worker whose db write failed: the job fails, the grant keeps its old plan.
    const worker = new Worker(
      REFRESH_QUEUE_NAME,
      async () => {
        throw new Error('database is locked');
      },
      { connection: { url: redis.url }, prefix: 'gk-reconcile-test' },
    );
    const id = refreshJobId(grant.id, 0, grant.nextRefreshAt);
    try {
      await waitFor(async () => (await queue.getJobState(id)) === 'failed', 'the job to fail');
    } finally {
      await worker.close();
    }
    expect(await reconciler.reconcileOnce()).toMatchObject({ revived: 0 });
    now += 2 * 60_000;
    expect(await reconciler.reconcileOnce()).toMatchObject({ revived: 1 });
    expect(['waiting', 'delayed', 'prioritized']).toContain(await queue.getJobState(id));
  });

  it('ranks overdue jobs that Redis kept while the service was down, most urgent first', async () => {
    const { reconciler } = make();
    // Planned in one order, with access expiries in another (minutes from now).
    const expiries = [40, -10, 25, 5];
    const planned = [];
    for (const [i, minutes] of expiries.entries()) {
      const g = await grants.saveConsent({
        clientRef,
        label: `kept-${i}`,
        accessToken: 'a',
        refreshToken: 'r',
        accessExpiresAt: now + minutes * 60_000,
        accessLifetimeMs: HOUR,
        refreshTokenUsedAt: now,
        nextRefreshAt: now - HOUR + i * 60_000,
        now,
      });
      planned.push({ g, minutes });
    }
    // Queued unranked, as by a scheduler that ran while they were still ahead.
    await queue.addBulk(
      planned.map(({ g }) => ({
        name: g.clientRef,
        data: { grantId: g.id, version: 0 },
        opts: { jobId: refreshJobId(g.id, 0, g.nextRefreshAt) },
      })),
    );
    expect(await reconciler.reconcileOnce()).toMatchObject({ added: 0, revived: 0 });
    const ranked = await queue.getPrioritized();
    const minutesOf = new Map(planned.map(({ g, minutes }) => [g.id, minutes]));
    const ours = ranked.filter((j) => minutesOf.has(j.data.grantId));
    expect(ours.map((j) => minutesOf.get(j.data.grantId))).toEqual([...expiries].sort((a, b) => a - b));
  });
});
