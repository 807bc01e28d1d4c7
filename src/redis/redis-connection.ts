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

/** Fails fast with one clear line when Redis is not there, instead of retrying silently forever. */
export async function checkRedisReachable(url: string, timeoutMs = 3000): Promise<void> {
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
      `cannot reach Redis at ${describeRedisUrl(url)} (${(err as Error).message}): start it, fix REDIS_URL, ` +
        'or unset REDIS_URL to let grantkeeper run its own redis-server',
      1,
      { cause: err },
    );
  } finally {
    probe.disconnect();
  }
}

/** BullMQ wants commands to wait for a reconnect rather than fail, hence maxRetriesPerRequest null. */
export function createQueueConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}
