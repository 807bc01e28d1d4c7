import { DrizzleQueryError } from 'drizzle-orm';
import { StorageError, type StorageFailure } from '../../grants/storage-error.js';

/** Node's socket errors: the server is not there, or the path to it broke. */
const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * node-postgres reports a dropped connection, a pool wait or a query timeout in words, without a
 * code: these are those words.
 */
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
];

/** The driver's own error: drizzle wraps every failed query in a DrizzleQueryError with it as `cause`. */
function driverErrorOf(err: unknown): unknown {
  return err instanceof DrizzleQueryError && err.cause ? err.cause : err;
}

/**
 * Classifies a failed PostgreSQL call by SQLSTATE (or the socket error under it) into the store's
 * failures, so the refresh engine defers and holds exactly as it does on SQLite. Undefined means
 * the statement itself failed (a constraint, a type): a bug, and pointless to retry.
 */
export function postgresFailureOf(err: unknown): StorageFailure | undefined {
  const driverError = driverErrorOf(err) as { code?: unknown; message?: unknown } | null | undefined;
  if (!driverError || typeof driverError !== 'object') return undefined;
  const code = typeof driverError.code === 'string' ? driverError.code : '';
  // 53100 disk_full; the rest of class 53 (memory, connections) is the server being unable for now.
  if (code === '53100') return 'disk_full';
  // 55P03 lock_not_available (lock_timeout); 57014 a statement that outwaited statement_timeout.
  if (code === '55P03' || code === '57014') return 'locked';
  // 40001 serialization_failure, 40P01 deadlock_detected: another transaction won; ask again.
  if (code === '40001' || code === '40P01') return 'conflict';
  if (
    code.startsWith('08') || // connection exceptions
    code.startsWith('53') ||
    code.startsWith('58') || // system errors (I/O)
    code === '57P01' || // admin_shutdown
    code === '57P02' || // crash_shutdown
    code === '57P03' || // cannot_connect_now (starting up, shutting down)
    code === '25006' // read_only_sql_transaction: a standby, or writes turned off
  ) {
    return 'unavailable';
  }
  if (CONNECTION_ERRNOS.has(code)) return 'unavailable';
  const message = typeof driverError.message === 'string' ? driverError.message : '';
  if (!code && CONNECTION_MESSAGES.some((m) => message.includes(m))) return 'unavailable';
  return undefined;
}

/**
 * Runs one store operation, turning what PostgreSQL says about its storage into a StorageError.
 * Anything else is rethrown as the driver's own error: drizzle's wrapper quotes the statement and
 * its parameters (sealed values, labels), which no log line should carry.
 */
export async function guarded<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (err) {
    const failure = postgresFailureOf(err);
    if (failure) throw new StorageError(failure, { cause: driverErrorOf(err) });
    throw driverErrorOf(err);
  }
}
