import { join } from 'node:path';
import type { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { Reconciler } from '../../jobs/reconciler.js';
import { createRefreshProcessor } from '../../jobs/refresh-processor.js';
import { createRefreshQueue, type RefreshJobData, type RefreshQueue } from '../../jobs/refresh-queue.js';
import { RefreshScheduler } from '../../jobs/refresh-scheduler.js';
import { createRefreshWorker } from '../../jobs/refresh-worker.js';
import type { LoadedConfig } from '../config/load-config.js';
import type { Logger } from '../log/logger.js';
import { TokenClient } from '../oauth/token-client.js';
import { DEFAULT_BACKOFF } from '../policy/backoff.js';
import { DEFAULT_REFRESH_TIMING } from '../policy/refresh-timing.js';
import { type ManagedRedis, startManagedRedis } from '../redis/managed-redis.js';
import { checkRedisReachable, createQueueConnection, describeRedisUrl } from '../redis/redis-connection.js';
import { GrantRefresher } from '../refresh/grant-refresher.js';
import { type AppContext, openAppContext } from './app-context.js';
import { syncConfigClients } from './sync-config-clients.js';

/** A grant overdue by this much whose job has ended gets its job back at the next reconcile. */
const OVERDUE_GRACE_MS = 60_000;

export interface RefreshService {
  app: AppContext;
  redisUrl: string;
  queue: RefreshQueue;
  scheduler: RefreshScheduler;
  refresher: GrantRefresher;
  reconciler: Reconciler;
  /** Absent when started with runWorker: false. */
  worker?: Worker<RefreshJobData, string>;
  /** Stops taking jobs, lets running refreshes commit, then closes everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /** Start the BullMQ worker (default) or only schedule (e.g. a read-only API process). */
  runWorker?: boolean;
}

/** Wires the refresh engine: store, Redis (given or managed), queue, worker and reconciler. */
export async function startRefreshService(
  loaded: LoadedConfig,
  logger: Logger,
  options: StartOptions = {},
): Promise<RefreshService> {
  const { config } = loaded;
  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanup = async () => {
    // splice: a second stop() finds nothing left to close.
    for (const fn of cleanups.splice(0).reverse()) await fn();
  };
  try {
    const app = await openAppContext(loaded, logger);
    cleanups.push(() => app.close());
    await syncConfigClients(config.clients, app.clients, options.env ?? process.env, Date.now());

    let redisUrl = config.redisUrl;
    if (redisUrl) {
      await checkRedisReachable(redisUrl);
    } else {
      const managed: ManagedRedis = await startManagedRedis({ dataDir: join(app.dataDir, 'redis'), logger });
      cleanups.push(() => managed.stop());
      redisUrl = managed.url;
      logger.info({ redis: redisUrl, pid: managed.pid }, 'started a managed redis-server (no REDIS_URL set)');
    }
    const connection: Redis = createQueueConnection(redisUrl);
    connection.on('error', (err) => logger.warn({ err: { message: err.message } }, 'redis connection error'));
    cleanups.push(async () => {
      await connection.quit().catch(() => connection.disconnect());
    });

    const horizonMs = config.scheduleHorizonSeconds * 1000;
    const queue = createRefreshQueue(connection, config.queuePrefix);
    cleanups.push(() => queue.close());
    const scheduler = new RefreshScheduler(queue, { horizonMs });
    const requestTimeoutMs = config.requestTimeoutSeconds * 1000;
    const tokenClient = new TokenClient({ timeoutMs: requestTimeoutMs });
    cleanups.push(() => tokenClient.close());
    const refresher = new GrantRefresher({
      grants: app.grants,
      clients: app.clients,
      tokenClient,
      timing: { ...DEFAULT_REFRESH_TIMING, ...config.refreshTiming },
      backoff: { ...DEFAULT_BACKOFF, ...config.backoff },
      logger,
      leaseMs: requestTimeoutMs + config.leaseMarginSeconds * 1000,
    });
    const reconciler = new Reconciler(app.grants, queue, connection, scheduler, logger, {
      intervalMs: config.reconcileIntervalSeconds * 1000,
      horizonMs,
      overdueGraceMs: OVERDUE_GRACE_MS,
    });
    // The first pass runs before the worker so start-up fails loudly if Redis misbehaves.
    await reconciler.reconcileOnce();
    let worker: Worker<RefreshJobData, string> | undefined;
    if (options.runWorker !== false) {
      const started = createRefreshWorker({
        connection,
        processor: createRefreshProcessor({ refresher, scheduler, logger }),
        concurrency: config.concurrency,
        logger,
        prefix: config.queuePrefix,
      });
      worker = started;
      cleanups.push(() => started.close());
    }
    reconciler.start();
    cleanups.push(() => reconciler.stop());
    logger.info(
      { redis: describeRedisUrl(redisUrl), dataDir: app.dataDir, concurrency: config.concurrency },
      'grantkeeper refresh service running',
    );
    return {
      app,
      redisUrl,
      queue,
      scheduler,
      refresher,
      reconciler,
      ...(worker ? { worker } : {}),
      stop: cleanup,
    };
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }
}
