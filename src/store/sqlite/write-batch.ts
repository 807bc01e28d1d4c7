/** What one queued write ended with, inside the shared transaction. */
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Queued {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface WriteBatchOptions {
  /** Runs `fn` in one transaction; throws if it cannot commit. */
  transaction: (fn: () => void) => void;
  /** Runs `fn` in a savepoint of the open transaction, rolled back if `fn` throws. */
  savepoint: <T>(fn: () => T) => T;
  /** Whether the transaction is still open: some errors (SQLITE_FULL, IOERR) roll it all back. */
  inTransaction: () => boolean;
}

/**
 * Group commit for SQLite. Writes asked for in the same turn of the event loop (many refreshes
 * claiming, fencing or committing together) run in one transaction, each in its own savepoint,
 * so one commit stands for all of them: per refresh a commit was the largest CPU cost. A write's
 * promise settles only after that commit, so nothing acts on a write that is not durable yet
 * (invariant 3). A write that fails alone is rolled back alone; one that ends the whole
 * transaction, or a commit that fails, fails every write of the batch.
 */
export class WriteBatch {
  private queued: Queued[] = [];

  constructor(private readonly options: WriteBatchOptions) {}

  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queued.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.queued.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.queued;
    this.queued = [];
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
