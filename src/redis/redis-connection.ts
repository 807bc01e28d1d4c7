import { Redis } from 'ioredis';
import { UserError } from '../errors/user-error.js';

/** host:port/db of a Redis URL, without credentials: safe for logs and error messages. */
export function describeRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(unparseable Redis URL)';
  }
}

const REDIS_URL_HINT =
  'start it, fix REDIS_URL, or unset REDIS_URL to let grantkeeper run its own redis-server';

/**
 * Fails fast with one clear line when Redis is not there, instead of retrying silently forever.
 * `hint` says what to do about it (the default is about REDIS_URL).
 */
export async function checkRedisReachable(
  url: string,
  timeoutMs = 3000,
  hint: string | null = REDIS_URL_HINT,
): Promise<void> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
  } catch (err) {
    throw new UserError(
      `cannot reach Redis at ${describeRedisUrl(url)} (${(err as Error).message})${hint ? `: ${hint}` : ''}`,
      1,
      { cause: err },
    );
  } finally {
    probe.disconnect();
  }
}

/**
 * BullMQ wants commands to wait for a reconnect rather than fail, hence maxRetriesPerRequest null.
 * Once `stopRetrying` says so, the next failed reconnect ends the connection and fails what waits
 * on it; BullMQ's own copies of it (a worker's blocking connection) share the strategy.
 */
export function createQueueConnection(url: string, opts: { stopRetrying?: () => boolean } = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    // ioredis's default delay, unless told to give up.
    retryStrategy: (times) => (opts.stopRetrying?.() ? null : Math.min(times * 50, 2000)),
  });
}

/** QUIT when connected; a connection still retrying is dropped, since QUIT would wait for Redis to return. */
export async function closeConnection(connection: Redis): Promise<void> {
  if (connection.status !== 'ready') {
    connection.disconnect();
    return;
  }
  await connection.quit().catch(() => connection.disconnect());
}
