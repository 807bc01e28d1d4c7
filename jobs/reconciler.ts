import type { GrantRepository, RefreshScheduler, SchedulableGrant } from '../src/grants/ports.js';
import type { Logger } from '../src/log/logger.js';
import type { RedisClient } from '../src/redis/redis-endpoint.js';
import { type RefreshQueue, refreshJobId } from './refresh-queue.js';
import { overduePriority } from './refresh-scheduler.js';

/** Grants read and checked against Redis per round trip. */
const PAGE = 1000;
/** Overdue jobs looked at concurrently (their commands share the connection's pipeline). */
const OVERDUE_CHUNK = 200;

export interface ReconcilerOptions {
  intervalMs: number;
  horizonMs: number;
  /** A grant this far past due whose job is not waiting to run has lost it: plan it again. */
  overdueGraceMs: number;
  now?: () => number;
}

export interface ReconcileReport {
  checked: number;
  added: number;
  revived: number;
}

/**
 * Makes Redis agree with the db: every live grant due within the horizon has its job. Run at start
 * and on an interval, so a Redis that lost everything is healed within one interval.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly now: () => number;

  constructor(
    private readonly grants: GrantRepository,
    private readonly queue: RefreshQueue,
    /** The queue's own connection: job existence is checked with pipelined EXISTS, not per-job calls. */
    private readonly redis: RedisClient,
    private readonly scheduler: RefreshScheduler,
    private readonly logger: Logger,
    private readonly options: ReconcilerOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /**
   * One pass over the grants due within the horizon, a page at a time: each page's missing jobs
   * are queued before the next page is read, so a catch-up starts with the first page, not after
   * the whole table, and holds one page in memory.
   */
  async reconcileOnce(): Promise<ReconcileReport> {
    const now = this.now();
    const report: ReconcileReport = { checked: 0, added: 0, revived: 0 };
    let after: SchedulableGrant | undefined;
    for (;;) {
      const page = await this.grants.listSchedulable(now + this.options.horizonMs, {
        limit: PAGE,
        ...(after ? { after } : {}),
      });
      if (page.length === 0) break;
      report.checked += page.length;
      after = page[page.length - 1];
      const { missing, overdue } = await this.checkJobs(page, now);
      const revived = await this.reviveOverdue(overdue, now);
      const added = await this.scheduler.schedule([...missing, ...revived]);
      report.added += added - revived.length;
      report.revived += revived.length;
      if (page.length < PAGE) break;
    }
    if (report.added > 0 || report.revived > 0) this.logger.info(report, 'reconciled refresh jobs');
    return report;
  }

  /** Looks up a page's jobs: the grants without one, and those whose job is overdue. */
  private async checkJobs(
    page: SchedulableGrant[],
    now: number,
  ): Promise<{ missing: SchedulableGrant[]; overdue: SchedulableGrant[] }> {
    const pipeline = this.redis.pipeline();
    for (const g of page) pipeline.exists(this.queue.toKey(refreshJobId(g.id, g.version, g.nextRefreshAt)));
    const results = (await pipeline.exec()) ?? [];
    const missing: SchedulableGrant[] = [];
    const overdue: SchedulableGrant[] = [];
    page.forEach((g, j) => {
      const [err, exists] = results[j] ?? [];
      if (err) throw err;
      if (exists === 0) missing.push(g);
      else if (g.nextRefreshAt < now - this.options.overdueGraceMs) overdue.push(g);
    });
    return { missing, overdue };
  }

  /**
   * A job that ended (failed without the db recording a new plan, e.g. when the db write itself
   * failed) still occupies its id; remove it so the plan can be queued again. One still waiting
   * (Redis kept it while the service was down) is ranked like a new overdue job, so the catch-up
   * runs most urgent first instead of in plan order.
   */
  private async reviveOverdue(overdue: SchedulableGrant[], now: number): Promise<SchedulableGrant[]> {
    const revived: SchedulableGrant[] = [];
    const look = async (g: SchedulableGrant) => {
      const id = refreshJobId(g.id, g.version, g.nextRefreshAt);
      const state = await this.queue.getJobState(id);
      if (state === 'failed' || state === 'completed') {
        await this.queue.remove(id);
        revived.push(g);
        return;
      }
      const priority = overduePriority(g, now);
      if (priority === undefined || (state !== 'waiting' && state !== 'delayed')) return;
      const job = await this.queue.getJob(id);
      if (job && !job.opts.priority) await job.changePriority({ priority }).catch(() => {});
    };
    for (let i = 0; i < overdue.length; i += OVERDUE_CHUNK) {
      await Promise.all(overdue.slice(i, i + OVERDUE_CHUNK).map(look));
    }
    return revived;
  }

  /**
   * Reconciles every interval, the first one interval from now: the caller runs the first pass
   * (at start, before the worker). A slow pass is never overlapped by the next.
   */
  start(): void {
    const tick = () => {
      this.running = this.reconcileOnce()
        .catch((err: Error) =>
          this.logger.warn({ err: { message: err.message } }, 'reconcile pass failed; will retry'),
        )
        .finally(() => {
          this.running = undefined;
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.options.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.options.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
