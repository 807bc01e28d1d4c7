import type { Tracer } from '@opentelemetry/api';
import type { Worker } from 'bullmq';
import { Reconciler } from '../../jobs/reconciler.js';
import { createRefreshProcessor } from '../../jobs/refresh-processor.js';
import type { RefreshJobData } from '../../jobs/refresh-queue.js';
import { createRefreshWorker } from '../../jobs/refresh-worker.js';
import type { LoadedConfig } from '../config/load-config.js';
import type { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import type { RedisClient } from '../redis/redis-endpoint.js';
import { configuredRedis, describeRedisEndpoint, type RedisEndpoint } from '../redis/redis-endpoint.js';
import { openServiceRedis } from '../redis/service-redis.js';
import type { RefreshObserver } from '../refresh/refresh-observer.js';
import { CleanupStack } from '../util/cleanup-stack.js';
import { boundHeapGrowth } from './heap-growth.js';
import { QueuePauseWatch } from './queue-pause-watch.js';
import { createRefreshEngine, type QueuedRefreshEngine } from './refresh-engine.js';
import { openStoreContext, type StoreContext } from './store-context.js';
import { configClientSecret, syncConfigClients } from './sync-config-clients.js';

/** A grant overdue by this much whose job has ended gets its job back at the next reconcile. */
const OVERDUE_GRACE_MS = 60_000;
/**
 * better-sqlite3 waits for a lock synchronously, freezing the whole service (API, BullMQ lock
 * renewals) meanwhile. The service waits briefly and then defers claims and holds received answers
 * asynchronously; one-shot CLI commands keep the longer default.
 */
const SERVICE_LOCK_WAIT_MS = 1000;

export interface RefreshService {
  app: StoreContext;
  engine: QueuedRefreshEngine;
  /** With any Redis password: never log it (describeRedisEndpoint). */
  redis: RedisEndpoint;
  connection: RedisClient;
  reconciler: Reconciler;
  /**
   * Settles when the service must stop and be restarted: its managed redis-server died more often
   * than it may be restarted, or (serve) the managed Redis it uses is gone for good.
   */
  redisGone: Promise<GrantkeeperError>;
  /** Absent when started with runWorker: false. */
  worker?: Worker<RefreshJobData, string>;
  /** Watches the refresh queue for a pause (worker processes only); hook alerts with onChange. */
  queuePause?: QueuePauseWatch;
  /** Stops taking jobs, lets running refreshes commit, then closes everything. */
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  /**
   * Start the BullMQ worker (default) or only schedule (e.g. an API-only process, which uses the
   * managed redis-server a worker started instead of starting one).
   */
  runWorker?: boolean;
  observers?: RefreshObserver[];
  /** The exporting tracer when traces are on (startTracing). */
  tracer?: Tracer;
}

/** The promises still running, so a stop can wait for them itself. */
class InFlight {
  private readonly running = new Set<Promise<unknown>>();

  track<T>(promise: Promise<T>): Promise<T> {
    this.running.add(promise);
    const forget = () => this.running.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  async settled(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }
}

/** Wires the refresh engine: store, Redis (given or managed), queue, worker and reconciler. */
export async function startRefreshService(
  loaded: LoadedConfig,
  logger: Logger,
  options: StartOptions = {},
): Promise<RefreshService> {
  const { config } = loaded;
  const cleanups = new CleanupStack();
  try {
    // Configuration mistakes are reported before anything is started.
    for (const c of config.clients) configClientSecret(c, options.env ?? process.env);
    boundHeapGrowth();
    const app = await openStoreContext(loaded, logger, { lockWaitMs: SERVICE_LOCK_WAIT_MS });
    cleanups.add(() => app.close());
    // A second run on this folder stops here, before it syncs clients or touches the queue.
    const redis = await openServiceRedis({
      redis: configuredRedis(loaded),
      dataDir: app.dataDir,
      logger,
      role: options.runWorker === false ? 'guest' : 'owner',
    });
    cleanups.add(() => redis.close());
    const { connection, endpoint } = redis;
    let redisLost = false;
    void redis.gone.then(() => {
      redisLost = true;
    });
    await syncConfigClients(config.clients, app.clients, options.env ?? process.env, Date.now());

    const engine = createRefreshEngine(app, config, logger, {
      connection,
      ...(options.observers ? { observers: options.observers } : {}),
      ...(options.tracer ? { tracer: options.tracer } : {}),
    });
    cleanups.add(() => engine.close());
    engine.storage.prepare();
    const reconciler = new Reconciler(app.grants, engine.queue, connection, engine.scheduler, logger, {
      intervalMs: config.reconcileIntervalSeconds * 1000,
      horizonMs: config.scheduleHorizonSeconds * 1000,
      overdueGraceMs: OVERDUE_GRACE_MS,
    });
    // The first pass runs before the worker so start-up fails loudly if Redis misbehaves.
    await reconciler.reconcileOnce();
    let worker: Worker<RefreshJobData, string> | undefined;
    if (options.runWorker !== false) {
      const refreshes = new InFlight();
      const processJob = createRefreshProcessor({
        refresher: engine.refresher,
        scheduler: engine.scheduler,
        tracing: engine.tracing,
        logger,
      });
      const started = createRefreshWorker({
        connection,
        processor: (job, token) => refreshes.track(processJob(job, token)),
        concurrency: config.concurrency,
        logger,
        // A crashed worker's jobs come back once BullMQ sees their lock gone: scale that with the db
        // lease (which is what actually guards the grant) instead of BullMQ's fixed 30 s lock plus
        // 30 s check, which held a killed worker's grants for up to a minute and a half. The 5 s
        // floor keeps lock renewals clear of event-loop stalls; the 30 s cap is BullMQ's default.
        stalledAfterMs: Math.min(30_000, Math.max(5_000, engine.leaseMs)),
        prefix: config.queuePrefix,
      });
      worker = started;
      cleanups.add(async () => {
        if (!redisLost) return started.close();
        // BullMQ's graceful close waits for Redis, which is not coming back: let the running
        // refreshes commit to the db (their job acks are lost; the reconciler replans them), then
        // close without waiting.
        await refreshes.settled();
        await started.close(true);
      });
    }
    reconciler.start();
    cleanups.add(() => reconciler.stop());
    let queuePause: QueuePauseWatch | undefined;
    if (worker) {
      const watch = new QueuePauseWatch(engine.queue, logger, config.reconcileIntervalSeconds * 1000);
      queuePause = watch;
      await watch.start();
      cleanups.add(() => watch.stop());
    }
    logger.info(
      { redis: describeRedisEndpoint(endpoint), dataDir: app.dataDir, concurrency: config.concurrency },
      'grantkeeper refresh service running',
    );
    return {
      app,
      engine,
      redis: endpoint,
      connection,
      reconciler,
      redisGone: redis.gone,
      ...(worker ? { worker } : {}),
      ...(queuePause ? { queuePause } : {}),
      stop: () => cleanups.run(),
    };
  } catch (err) {
    await cleanups.run().catch(() => {});
    throw err;
  }
}
