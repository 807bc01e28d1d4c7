/** Why the database would not take a write that may succeed later. */
export type StorageFailure = 'disk_full' | 'locked' | 'io_error';

/** How long work the database refused waits before it is tried again (refreshes, API callers). */
export const STORAGE_RETRY_MS = 2000;

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : '';
}

/**
 * Classifies a failed SQLite or file-system call by what it says about the storage under it.
 * Undefined means the statement itself failed (a constraint, a type): a bug, and pointless to retry.
 */
export function storageFailureOf(err: unknown): StorageFailure | undefined {
  const code = codeOf(err);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') return 'disk_full';
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_BUSY_')) return 'locked';
  if (code.startsWith('SQLITE_IOERR')) return 'io_error';
  return undefined;
}

/** One line for logs and API answers; never the statement or its values. */
export function describeStorageFailure(failure: StorageFailure): string {
  switch (failure) {
    case 'disk_full':
      return 'the disk holding the database is full';
    case 'locked':
      return 'the database is locked by another writer';
    case 'io_error':
      return 'the database cannot be written (I/O error)';
  }
}
