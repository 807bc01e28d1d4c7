import type { Logger } from '../log/logger.js';
import type { RedisClient } from './redis-endpoint.js';

/**
 * While Redis is away ioredis retries every couple of seconds and every attempt is an 'error' on
 * the connection, re-emitted by each BullMQ queue and worker on it. An outage is one event: it is
 * logged once when it starts and once when it ends, never as a stream.
 */

const CONNECTION_TROUBLE =
  /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|Connection is closed|Stream isn't writeable|max retries per request/i;

export function isRedisConnectionError(err: Error): boolean {
  return CONNECTION_TROUBLE.test(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`);
}

interface ErrorEmitter {
  on(event: 'error', listener: (err: Error) => void): unknown;
}

/**
 * For a queue or worker: an emitter with no 'error' listener prints unstructured lines to stderr
 * (BullMQ, ioredis), so each one gets this; connection trouble is left to watchRedisConnection.
 */
export function logRedisErrors(source: ErrorEmitter, logger: Logger, msg: string): void {
  source.on('error', (err) => {
    if (!isRedisConnectionError(err)) logger.warn({ err: { message: err.message } }, msg);
  });
}

export interface OutageLimit {
  /** Called once when an outage has lasted this long. */
  afterMs: number;
  onExceeded(downMs: number): void;
}

/** Logs the start and end of each outage of `connection`; `label` names it without credentials. */
export function watchRedisConnection(
  connection: RedisClient,
  logger: Logger,
  label: string,
  limit?: OutageLimit,
): void {
  let downSince: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  connection.on('error', (err: Error) => {
    if (downSince !== undefined) return;
    const since = Date.now();
    downSince = since;
    logger.warn(
      { redis: label, err: { message: err.message } },
      'lost the connection to Redis; waiting for it to come back',
    );
    if (limit) timer = setTimeout(() => limit.onExceeded(Date.now() - since), limit.afterMs);
  });
  connection.on('ready', () => {
    if (downSince === undefined) return;
    clearTimeout(timer);
    logger.info({ redis: label, downMs: Date.now() - downSince }, 'Redis connection restored');
    downSince = undefined;
  });
  connection.on('end', () => clearTimeout(timer));
}
