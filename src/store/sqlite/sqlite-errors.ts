import { StorageError, type StorageFailure } from '../../grants/storage-error.js';

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : '';
}

/**
 * Classifies a failed SQLite or file-system call by what it says about the storage under it.
 * Undefined means the statement itself failed (a constraint, a type): a bug, and pointless to retry.
 */
export function sqliteFailureOf(err: unknown): StorageFailure | undefined {
  const code = codeOf(err);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT') return 'disk_full';
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_BUSY_')) return 'locked';
  if (code.startsWith('SQLITE_IOERR') || code === 'SQLITE_READONLY' || code.startsWith('SQLITE_READONLY_')) {
    return 'unavailable';
  }
  return undefined;
}

/** Runs one store operation, turning what SQLite says about its storage into a StorageError. */
export function guarded<T>(operation: () => T): T {
  try {
    return operation();
  } catch (err) {
    const failure = sqliteFailureOf(err);
    throw failure ? new StorageError(failure, { cause: err }) : err;
  }
}
