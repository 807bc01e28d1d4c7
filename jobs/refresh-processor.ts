import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import type { Grant } from '../src/grants/grant.js';
import type { RefreshScheduler } from '../src/grants/ports.js';
import type { Logger } from '../src/log/logger.js';
import type { GrantRefresher } from '../src/refresh/grant-refresher.js';
import { SPAN_NAMES } from '../src/telemetry/span-policy.js';
import { inSpan, type TraceSpan, type Tracing } from '../src/telemetry/spans.js';
import { jobClientSchema, type RefreshJobData, refreshJobDataSchema } from './refresh-queue.js';

export interface RefreshProcessorDeps {
  refresher: GrantRefresher;
  scheduler: RefreshScheduler;
  /** Each job is a `grantkeeper.refresh` root span, its next job's scheduling a child. */
  tracing: Tracing;
  logger: Logger;
}

/**
 * The BullMQ side of a refresh: run it, then plan what comes next. Transient failures fail the job
 * (so operators see them as failed jobs) but the retry is a new job planned from the db, so a
 * Redis that loses its state loses no retry.
 */
export function createRefreshProcessor(deps: RefreshProcessorDeps) {
  return async (job: Job<RefreshJobData>, token?: string): Promise<string> => {
    const parsed = refreshJobDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError('malformed refresh job data');
    const span = deps.tracing.start(SPAN_NAMES.refresh, { trigger: 'schedule' });
    try {
      // Jobs queued by older versions are named 'refresh': their client is found after the claim.
      const client = jobClientSchema.safeParse(job.name).data;
      return await refreshAndPlan(job, token, parsed.data, client, span);
    } finally {
      span.end();
    }
  };

  async function refreshAndPlan(
    job: Job<RefreshJobData>,
    token: string | undefined,
    { grantId, version }: RefreshJobData,
    client: string | undefined,
    span: TraceSpan,
  ): Promise<string> {
    const schedule = (grant: Grant) =>
      inSpan(span.child(SPAN_NAMES.schedule), () => deps.scheduler.schedule([grant]));
    const result = await deps.refresher.refresh(grantId, version, 'schedule', span, client);
    switch (result.status) {
      case 'refreshed':
        await schedule(result.grant);
        return 'refreshed';
      case 'retrying':
        await schedule(result.grant);
        throw new Error(
          `${result.error.message} (failure ${result.grant.consecutiveFailures}; next attempt at ${new Date(result.grant.nextRefreshAt).toISOString()})`,
        );
      case 'stopped':
        throw new UnrecoverableError(`${result.error.message}; grant is now ${result.grant.state}`);
      case 'broken':
        throw new UnrecoverableError(result.grant.lastError ?? 'grant is broken');
      case 'busy':
      case 'in_doubt':
      case 'lease_lost':
      // Its client is paced: the grant is untouched and waits its turn, never failing for it.
      case 'paced':
        // Someone else is refreshing, or an answer may still be on its way, or we stalled before
        // sending: look again then (the version will have moved on, making this job stale, or the
        // work is still ours to do).
        await job.moveToDelayed(result.retryAt, token);
        throw new DelayedError();
      case 'deferred':
        // Nothing was claimed or sent: the same plan runs again once the database takes writes,
        // instead of failing until the reconciler revives it.
        // (A full disk is logged once by the storage gate, not once per waiting job.)
        if (result.cause !== 'disk_full') {
          deps.logger.warn(
            { grantId, cause: result.cause },
            'refresh deferred: the database cannot take writes',
          );
        }
        await job.moveToDelayed(result.retryAt, token);
        throw new DelayedError();
      default:
        deps.logger.debug({ grantId, version, status: result.status }, 'refresh job had nothing to do');
        return result.status;
    }
  }
}
