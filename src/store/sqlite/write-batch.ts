/** What one queued write ended with, inside the shared transaction. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Queued {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface WriteBatchOptions {
  /** Runs `fn` in one transaction, rolled back if `fn` throws; throws if it cannot commit. */
  transaction: <T>(fn: () => T) => T;
  /** Runs `fn` in a savepoint of the open transaction, rolled back if `fn` throws. */
  savepoint: <T>(fn: () => T) => T;
  /** Whether the transaction is still open: some errors (SQLITE_FULL, IOERR) roll it all back. */
  inTransaction: () => boolean;
}

/**
 * Group commit for SQLite. Writes asked for in the same turn of the event loop (many refreshes
 * claiming, fencing or committing together) run in one transaction, so one commit stands for all
 * of them: per refresh a commit was the largest CPU cost. A write's promise settles only after
 * that commit, so nothing acts on a write that is not durable yet (invariant 3).
 *
 * Optimistic: the writes first run bare, since a savepoint each cost more than the statements
 * (better-sqlite3, WAL: 35 µs a write in a savepoint, 19-25 µs without). Should one fail, the
 * transaction undoes them all and the batch runs again with a savepoint each, so a write that
 * fails alone is rolled back alone; one that ends the whole transaction, or a commit that fails,
 * fails every write of the batch.
 */
export class WriteBatch {
  private queued: Queued[] = [];

  constructor(private readonly options: WriteBatchOptions) {}

  /** Queues `work` for the next batch. It may run twice (see above), so it must only touch the db. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.queued.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.queued;
    this.queued = [];
    let values: unknown[];
    try {
      values = this.options.transaction(() => batch.map((item) => item.work()));
    } catch (error) {
      if (batch.length > 1) this.oneByOne(batch);
      else batch[0]?.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      item.resolve(values[i]);
    });
  }

  private oneByOne(batch: Queued[]): void {
    const outcomes: Outcome[] = [];
    try {
      this.options.transaction(() => {
        for (const item of batch) {
          try {
            outcomes.push({ ok: true, value: this.options.savepoint(item.work) });
          } catch (error) {
            // Rolled back with the rest: what ran before it is gone too, so all of them fail.
            if (!this.options.inTransaction()) throw error;
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i] as Outcome;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }
}
