import { type ConnectionOptions, type Job, Worker } from 'bullmq';
import type { Logger } from '../src/log/logger.js';
import { logRedisErrors } from '../src/redis/connection-watch.js';
import { DEFAULT_QUEUE_PREFIX, REFRESH_QUEUE_NAME, type RefreshJobData } from './refresh-queue.js';

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
    removeOnComplete: { count: 0 },
    // Failed attempts stay browsable for a week (dashboard, `grantkeeper failed`), bounded in count.
    removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
  });
  // Connection trouble is logged once per outage by the connection's watch, not per retry here.
  logRedisErrors(worker, options.logger, 'refresh worker error');
  return worker;
}
