import type { SchedulableGrant } from '../src/store/grant-store.js';
import { type RefreshQueue, refreshJobId } from './refresh-queue.js';

/** Failed attempts stay browsable for a week (dashboard, `grantkeeper failed`), bounded in count. */
const KEEP_FAILED = { age: 7 * 24 * 3600, count: 10_000 };

export interface RefreshSchedulerOptions {
  /** Only grants due within this window get a job now; the reconciler adds the rest as they near. */
  horizonMs: number;
  now?: () => number;
}

/** Turns a grant's `nextRefreshAt` from the db into a delayed job in Redis. */
export class RefreshScheduler {
  private readonly now: () => number;

  constructor(
    private readonly queue: RefreshQueue,
    private readonly options: RefreshSchedulerOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Returns how many of the grants got a job (those within the horizon). */
  async schedule(grants: readonly SchedulableGrant[]): Promise<number> {
    const now = this.now();
    const due = grants.filter((g) => g.nextRefreshAt <= now + this.options.horizonMs);
    if (due.length === 0) return 0;
    await this.queue.addBulk(
      due.map((g) => ({
        name: 'refresh',
        data: { grantId: g.id, version: g.version },
        opts: {
          jobId: refreshJobId(g.id, g.version, g.nextRefreshAt),
          delay: Math.max(0, g.nextRefreshAt - now),
          attempts: 1,
          removeOnComplete: true,
          removeOnFail: KEEP_FAILED,
        },
      })),
    );
    return due.length;
  }
}
