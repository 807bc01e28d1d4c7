import { Redis } from 'ioredis';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import {
  connectRedis,
  describeRedisEndpoint,
  type RedisClient,
  type RedisEndpoint,
} from './redis-endpoint.js';

/** host:port/db of a Redis URL, without credentials: safe for logs and error messages. */
export function describeRedisUrl(url: string): string {
  return describeRedisEndpoint({ kind: 'url', url });
}

const REDIS_URL_HINT =
  'start it, fix REDIS_URL, or unset REDIS_URL to let grantkeeper run its own redis-server';

/**
 * Fails fast with one clear line when Redis is not there, instead of retrying silently forever.
 * `hint` says what to do about it (the default is about REDIS_URL).
 */
export async function checkRedisReachable(
  endpoint: RedisEndpoint,
  timeoutMs = 3000,
  hint: string | null = REDIS_URL_HINT,
): Promise<void> {
  const probe = connectRedis(endpoint, {
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
    const why = endpoint.kind === 'sentinel' ? await diagnoseSentinels(endpoint, timeoutMs) : undefined;
    throw new GrantkeeperError(
      'redis_unavailable',
      `cannot reach Redis at ${describeRedisEndpoint(endpoint)} (${why ?? (err as Error).message})${hint ? `: ${hint}` : ''}`,
      { cause: err },
    );
  } finally {
    probe.disconnect();
  }
}

/**
 * ioredis says only "all sentinels are unreachable" when they answer but know no such master: ask
 * them directly, so a mistyped GRANTKEEPER_REDIS_SENTINEL_NAME is named as such.
 */
async function diagnoseSentinels(
  endpoint: Extract<RedisEndpoint, { kind: 'sentinel' }>,
  timeoutMs: number,
): Promise<string | undefined> {
  const known = new Set<string>();
  let answered = 0;
  for (const { host, port } of endpoint.sentinels) {
    const sentinel = new Redis({
      host,
      port,
      ...(endpoint.sentinelPassword ? { password: endpoint.sentinelPassword } : {}),
      lazyConnect: true,
      connectTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    sentinel.on('error', () => {});
    try {
      await sentinel.connect();
      const masters = (await sentinel.call('SENTINEL', 'masters')) as string[][];
      answered += 1;
      for (const fields of masters) known.add(String(fields[fields.indexOf('name') + 1]));
    } catch {
      // unreachable, or not a sentinel: ioredis's own message covers it
    } finally {
      sentinel.disconnect();
    }
  }
  if (answered === 0 || known.has(endpoint.name)) return undefined;
  const names = [...known].sort().join(', ') || 'none';
  return `${answered} sentinel${answered === 1 ? '' : 's'} answered, none monitors a master named "${endpoint.name}" (they monitor: ${names}); check GRANTKEEPER_REDIS_SENTINEL_NAME`;
}

/**
 * BullMQ wants commands to wait for a reconnect rather than fail, hence maxRetriesPerRequest null.
 * Once `stopRetrying` says so, the next failed reconnect ends the connection and fails what waits
 * on it; BullMQ's own copies of it (a worker's blocking connection) share the strategy.
 */
export function createQueueConnection(
  endpoint: RedisEndpoint,
  opts: { stopRetrying?: () => boolean } = {},
): RedisClient {
  return connectRedis(endpoint, {
    maxRetriesPerRequest: null,
    // ioredis's default delay, unless told to give up.
    retryStrategy: (times) => (opts.stopRetrying?.() ? null : Math.min(times * 50, 2000)),
  });
}

/** QUIT when connected; a connection still retrying is dropped, since QUIT would wait for Redis to return. */
export async function closeConnection(connection: RedisClient): Promise<void> {
  if (connection.status !== 'ready') {
    connection.disconnect();
    return;
  }
  await connection.quit().catch(() => connection.disconnect());
}
