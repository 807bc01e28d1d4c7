import { type ConnectionOptions, type Job, Worker } from 'bullmq';
import type { Logger } from '../src/log/logger.js';
import { logRedisErrors } from '../src/redis/connection-watch.js';
import { DEFAULT_QUEUE_PREFIX, REFRESH_QUEUE_NAME, type RefreshJobData } from './refresh-queue.js';

/**
 * How often a refresh job may stall (its worker stopped renewing the lock: killed, or its event
 * loop starved by a CPU-bound burst) before BullMQ fails it. Running a stalled refresh again is
 * safe, the db lease guards the grant, while failing it leaves the grant without a job until the
 * reconciler's next pass. BullMQ's default of 1 failed jobs that stalled twice under load.
 */
export const REFRESH_MAX_STALLED_COUNT = 5;

export interface RefreshWorkerOptions {
  connection: ConnectionOptions;
  processor: (job: Job<RefreshJobData>, token?: string) => Promise<string>;
  concurrency: number;
  logger: Logger;
  prefix?: string;
  /**
   * How long BullMQ keeps a job locked to a worker that stopped renewing it (a kill -9), and how
   * often it looks for such jobs. Both default to BullMQ's 30 s.
   */
  stalledAfterMs?: number;
}

/** The BullMQ worker that runs refresh jobs; several processes may run one against one Redis. */
export function createRefreshWorker(options: RefreshWorkerOptions): Worker<RefreshJobData, string> {
  const worker = new Worker<RefreshJobData, string>(REFRESH_QUEUE_NAME, options.processor, {
    connection: options.connection,
    prefix: options.prefix ?? DEFAULT_QUEUE_PREFIX,
    concurrency: options.concurrency,
    ...(options.stalledAfterMs === undefined
      ? {}
      : { lockDuration: options.stalledAfterMs, stalledInterval: options.stalledAfterMs }),
    maxStalledCount: REFRESH_MAX_STALLED_COUNT,
    removeOnComplete: { count: 0 },
    // Failed attempts stay browsable for a week (dashboard, `grantkeeper failed`), bounded in count.
    removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
  });
  // Connection trouble is logged once per outage by the connection's watch, not per retry here.
  logRedisErrors(worker, options.logger, 'refresh worker error');
  // Whichever worker finds a stalled job says so: a stall means a worker died or starved.
  worker.on('stalled', (jobId) =>
    options.logger.warn(
      { jobId },
      'refresh job stalled (its worker stopped renewing the lock); it runs again',
    ),
  );
  return worker;
}
