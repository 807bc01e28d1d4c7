import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import { watchRedisConnection } from './connection-watch.js';
import { managedRedisEndpoint } from './managed-redis-endpoint.js';
import { startOwnedRedis } from './managed-redis-owner.js';
import {
  checkRedisReachable,
  closeConnection,
  createQueueConnection,
  describeRedisUrl,
} from './redis-connection.js';
import type { RedisClient } from './redis-endpoint.js';
import { describeRedisEndpoint, type RedisEndpoint } from './redis-endpoint.js';

/** The Redis a `run` or `serve` works on, and its one shared connection. */
export interface ServiceRedis {
  /** With any password: never log it (describeRedisEndpoint). */
  endpoint: RedisEndpoint;
  connection: RedisClient;
  /**
   * Settles, with the reason, when the service cannot go on without a restart: the managed
   * redis-server it owns died too often, or the one it uses is gone for good. Never settles for
   * REDIS_URL, whose outages the service waits out.
   */
  gone: Promise<GrantkeeperError>;
  /** Closes the connection, then stops a redis-server this process owns. */
  close(): Promise<void>;
}

export type ManagedRedisRole =
  /** `run`: starts the folder's redis-server, refusing while another run owns it. */
  | 'owner'
  /** `serve`: uses the one a `run` started, and never starts one. */
  | 'guest';

/** How long a guest waits for the managed Redis to appear or come back before it gives up. */
export const GUEST_WAIT_MS = 30_000;

/**
 * Once Redis is gone for good, commands waiting for it would hold the shutdown forever: the
 * connections stop retrying, which fails them. (ioredis's disconnect() would not: called between
 * two reconnect attempts it leaves the connection "reconnecting" with its queue stranded.)
 */
function connectUntilGone(url: string, gone: Promise<GrantkeeperError>): RedisClient {
  let abandoned = false;
  void gone.then(() => {
    abandoned = true;
  });
  return createQueueConnection({ kind: 'url', url }, { stopRetrying: () => abandoned });
}

export async function openServiceRedis(opts: {
  /** The configured Redis; without one, the data folder's managed redis-server. */
  redis: RedisEndpoint | undefined;
  dataDir: string;
  logger: Logger;
  role: ManagedRedisRole;
  guestWaitMs?: number;
}): Promise<ServiceRedis> {
  const { logger } = opts;
  const never = new Promise<GrantkeeperError>(() => {});
  if (opts.redis) {
    const endpoint = opts.redis;
    await checkRedisReachable(endpoint);
    const connection = createQueueConnection(endpoint);
    watchRedisConnection(connection, logger, describeRedisEndpoint(endpoint));
    return { endpoint, connection, gone: never, close: () => closeConnection(connection) };
  }
  if (opts.role === 'owner') {
    const owned = await startOwnedRedis({ dataDir: opts.dataDir, logger });
    const connection = connectUntilGone(owned.url, owned.failed);
    watchRedisConnection(connection, logger, describeRedisUrl(owned.url));
    return {
      endpoint: { kind: 'url', url: owned.url },
      connection,
      gone: owned.failed,
      async close() {
        await closeConnection(connection);
        await owned.stop();
      },
    };
  }
  const waitMs = opts.guestWaitMs ?? GUEST_WAIT_MS;
  const url = await waitForManagedRedis(opts.dataDir, waitMs);
  let giveUp!: (err: GrantkeeperError) => void;
  const gone = new Promise<GrantkeeperError>((resolve) => {
    giveUp = resolve;
  });
  const connection = connectUntilGone(url, gone);
  watchRedisConnection(connection, logger, describeRedisUrl(url), {
    afterMs: waitMs,
    onExceeded: (downMs) =>
      giveUp(
        new GrantkeeperError(
          'redis_unavailable',
          `the managed Redis at ${describeRedisUrl(url)} has been unreachable for ${Math.round(downMs / 1000)} s ` +
            '(its grantkeeper run stopped or died)',
        ),
      ),
  });
  logger.info({ redis: describeRedisUrl(url) }, 'using the managed redis-server of grantkeeper run');
  return { endpoint: { kind: 'url', url }, connection, gone, close: () => closeConnection(connection) };
}

/** Polls for the endpoint a `run` publishes until it answers: both may be started at the same moment. */
async function waitForManagedRedis(dataDir: string, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs;
  let why = 'no grantkeeper run has started it';
  for (;;) {
    const endpoint = managedRedisEndpoint(dataDir);
    if (endpoint) {
      try {
        await checkRedisReachable({ kind: 'url', url: endpoint.url }, 1000, null);
        return endpoint.url;
      } catch (err) {
        why = (err as Error).message;
      }
    }
    if (Date.now() >= deadline) {
      throw new GrantkeeperError(
        'redis_unavailable',
        `no managed Redis answers for ${dataDir} after ${Math.round(waitMs / 1000)} s (${why}): ` +
          'start grantkeeper run (serve only serves beside it), or set REDIS_URL',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
