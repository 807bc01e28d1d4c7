/**
 * Why the store would not do what was asked, when asking again later may succeed:
 * - `locked`: another writer holds the lock past our wait (SQLite busy, PostgreSQL lock timeout);
 * - `disk_full`: no room to write (SQLITE_FULL, ENOSPC, SQLSTATE 53100);
 * - `unavailable`: the store cannot be reached or written at all for now (I/O error, connection
 *   lost, server shutting down, read-only);
 * - `conflict`: a concurrent transaction won (serialization failure, deadlock): retry at once.
 */
export type StorageFailure = 'locked' | 'disk_full' | 'unavailable' | 'conflict';

/**
 * The one error every store adapter throws for a failure of the storage under it, classified by the
 * adapter itself. Anything else a store call throws is a bug (a constraint, a type): not worth a
 * retry. The message never holds a statement or its values.
 */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly failure: StorageFailure,
    options?: { cause?: unknown },
  ) {
    super(describeStorageFailure(failure), options);
  }
}

/** The failure behind `err` when it is a StorageError; undefined for anything else. */
export function storageFailureOf(err: unknown): StorageFailure | undefined {
  return err instanceof StorageError ? err.failure : undefined;
}

/** How long work the store refused waits before it is tried again (refreshes, API callers). */
export const STORAGE_RETRY_MS = 2000;

/** One line for logs and API answers; never the statement or its values. */
export function describeStorageFailure(failure: StorageFailure): string {
  switch (failure) {
    case 'disk_full':
      return 'the disk holding the database is full';
    case 'locked':
      return 'the database is locked by another writer';
    case 'unavailable':
      return 'the database cannot be reached or written now';
    case 'conflict':
      return 'the database refused a write that raced another one';
  }
}
