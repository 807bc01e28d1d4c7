import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import type { Logger } from '../src/log/logger.js';
import type { GrantRefresher } from '../src/refresh/grant-refresher.js';
import { type RefreshJobData, refreshJobDataSchema } from './refresh-queue.js';
import type { RefreshScheduler } from './refresh-scheduler.js';

export interface RefreshProcessorDeps {
  refresher: GrantRefresher;
  scheduler: RefreshScheduler;
  logger: Logger;
}

/** Extra wait past a busy lease, so the retry does not land a hair before it expires. */
const LEASE_SLACK_MS = 250;
/** How long a job waits when the database stayed locked past its busy timeout. */
const DB_LOCKED_RETRY_MS = 2000;

/**
 * The BullMQ side of a refresh: run it, then plan what comes next. Transient failures fail the job
 * (so operators see them as failed jobs) but the retry is a new job planned from the db, so a
 * Redis that loses its state loses no retry.
 */
export function createRefreshProcessor(deps: RefreshProcessorDeps) {
  return async (job: Job<RefreshJobData>, token?: string): Promise<string> => {
    const parsed = refreshJobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError('malformed refresh job data');
    const { grantId, version } = parsed.data;
    let result: Awaited<ReturnType<GrantRefresher['refresh']>>;
    try {
      result = await deps.refresher.refresh(grantId, version, 'schedule');
    } catch (err) {
      // Another process held the write lock past the busy timeout: nothing was claimed or sent, so
      // the same plan simply runs again shortly instead of failing until the reconciler revives it.
      if (!isDatabaseLocked(err)) throw err;
      deps.logger.warn({ grantId }, 'database locked by another writer; retrying the refresh shortly');
      await job.moveToDelayed(Date.now() + DB_LOCKED_RETRY_MS, token);
      throw new DelayedError();
    }
    switch (result.status) {
      case 'refreshed':
        await deps.scheduler.schedule([result.grant]);
        return 'refreshed';
      case 'retrying':
        await deps.scheduler.schedule([result.grant]);
        throw new Error(
          `${result.error.message} (failure ${result.grant.consecutiveFailures}; next attempt at ${new Date(result.grant.nextRefreshAt).toISOString()})`,
        );
      case 'stopped':
        throw new UnrecoverableError(`${result.error.message}; grant is now ${result.grant.state}`);
      case 'busy':
        // Someone else is refreshing: look again once their lease is over (they will have moved the
        // version on, making this job stale, or crashed, leaving the work to us).
        await job.moveToDelayed(result.leaseUntil + LEASE_SLACK_MS, token);
        throw new DelayedError();
      default:
        deps.logger.debug({ grantId, version, status: result.status }, 'refresh job had nothing to do');
        return result.status;
    }
  };
}

function isDatabaseLocked(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
}
