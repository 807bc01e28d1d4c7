import type { RefreshScheduler, SchedulableGrant } from '../src/grants/ports.js';
import { byUrgency, catchUpPriority } from '../src/policy/catch-up-order.js';
import { type RefreshQueue, refreshJobId } from './refresh-queue.js';

/** Jobs per addBulk: one MULTI of 100,000 jobs held the catch-up worker at 1.9 GiB. */
const BATCH = 1000;

export interface RefreshSchedulerOptions {
  /** Only grants due within this window get a job now; the reconciler adds the rest as they near. */
  horizonMs: number;
  now?: () => number;
}

type JobSpec = Parameters<RefreshQueue['addBulk']>[0][number];

/**
 * A grant waiting for the next flush, with its delay fixed when it was scheduled, and a priority
 * when it was already overdue (a catch-up: most urgent first).
 */
interface Pending {
  grant: SchedulableGrant;
  delay: number;
  priority?: number;
}

/**
 * Turns a grant's `nextRefreshAt` from the db into a delayed job in Redis. Calls made in the same
 * turn of the event loop (many refreshes finishing together) share one addBulk round trip.
 */
export class QueueScheduler implements RefreshScheduler {
  private readonly now: () => number;
  private buffer: Pending[] = [];
  private nextFlush: Promise<void> | undefined;

  constructor(
    private readonly queue: RefreshQueue,
    private readonly options: RefreshSchedulerOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Resolves once the jobs are in Redis; returns how many of the grants got one (those within the horizon). */
  async schedule(grants: readonly SchedulableGrant[]): Promise<number> {
    const now = this.now();
    const due = grants.filter((g) => g.nextRefreshAt <= now + this.options.horizonMs);
    if (due.length === 0) return 0;
    for (const g of due) {
      const delay = Math.max(0, g.nextRefreshAt - now);
      // Only overdue jobs are ranked: BullMQ runs unranked due jobs first, so normal refreshes are
      // not held behind a catch-up, and the next job of a refresh is queued as cheaply as ever.
      const priority = delay === 0 ? overduePriority(g, now) : undefined;
      this.buffer.push(priority === undefined ? { grant: g, delay } : { grant: g, delay, priority });
    }
    this.nextFlush ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush());
    await this.nextFlush;
    return due.length;
  }

  async cancel(plan: SchedulableGrant): Promise<void> {
    // A job id names its plan, so the old plan's job is found without a scan; one already running
    // or finished is left alone (it finds the grant moved on).
    await this.queue.remove(refreshJobId(plan.id, plan.version, plan.nextRefreshAt)).catch(() => 0);
  }

  private async flush(): Promise<void> {
    const pending = this.buffer;
    this.buffer = [];
    this.nextFlush = undefined;
    // BullMQ keeps insertion order within a priority level: that order breaks ties by urgency.
    if (pending.some((p) => p.priority !== undefined)) pending.sort((a, b) => byUrgency(a.grant, b.grant));
    // Job specs are built one batch at a time: a reconcile pass of 100,000 grants would otherwise
    // hold 100,000 of them at once.
    for (let i = 0; i < pending.length; i += BATCH)
      await this.queue.addBulk(pending.slice(i, i + BATCH).map(toJobSpec));
  }
}

function toJobSpec({ grant: g, delay, priority }: Pending): JobSpec {
  return {
    name: g.clientRef,
    data: { grantId: g.id, version: g.version },
    // Only what differs per job: retention lives on the worker, so each job's opts stay small
    // enough for Redis to keep the job hash compact.
    opts: {
      jobId: refreshJobId(g.id, g.version, g.nextRefreshAt),
      delay,
      ...(priority === undefined ? {} : { priority }),
    },
  };
}

/** The priority a catch-up gives an overdue grant's job, or undefined for an unranked one. */
export function overduePriority(g: SchedulableGrant, now: number): number | undefined {
  return g.accessExpiresAt === undefined ? undefined : catchUpPriority(g.accessExpiresAt, now);
}
