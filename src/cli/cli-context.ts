import type { Command } from 'commander';
import { openCommandAlerts } from '../../jobs/alert-monitor.js';
import { type LoadedConfig, loadConfig } from '../config/load-config.js';
import { createLogger, type Logger } from '../log/logger.js';
import { managedRedisEndpoint } from '../redis/managed-redis-endpoint.js';
import { checkRedisReachable, closeConnection, createQueueConnection } from '../redis/redis-connection.js';
import type { RedisClient } from '../redis/redis-endpoint.js';
import { configuredRedis, type RedisEndpoint } from '../redis/redis-endpoint.js';
import { createRefreshEngine, type RefreshEngine } from '../service/refresh-engine.js';
import { openStoreContext, type StoreContext } from '../service/store-context.js';

/** The managed redis-server's owner, as its claim in the data folder says. */
export interface ManagedRedisOwner {
  pid: number;
  /** False: the grantkeeper run that started it died without stopping it. */
  alive: boolean;
}

/** Where the service's Redis stands, as seen by a one-shot command. */
export type RedisHealth =
  | { state: 'connected'; endpoint: RedisEndpoint; owner?: ManagedRedisOwner }
  | { state: 'unreachable'; endpoint: RedisEndpoint; error: string; owner?: ManagedRedisOwner }
  /** No REDIS_URL and no managed redis-server running: the service is not up. */
  | { state: 'not_running' };

export interface CliContext {
  loaded: LoadedConfig;
  logger: Logger;
  app: StoreContext;
  engine: RefreshEngine;
  redis: RedisHealth;
  /** Present when Redis answered: the engine then has a queue and a scheduler. */
  connection?: RedisClient;
}

/** How long a one-shot command waits for Redis before carrying on without it. */
const REDIS_PROBE_MS = 1500;

/**
 * Opens what a command needs: config, store, and the refresh engine, with the service's Redis when
 * it is reachable (jobs are then queued directly; otherwise the service's reconciler catches up).
 * Runs `fn` and closes everything, whatever happens.
 */
export async function withCliContext<T>(
  program: Command,
  fn: (ctx: CliContext) => Promise<T>,
  opts: {
    redis?: boolean;
    /** Only commands that register something may create a new store; others refuse to. */
    create?: boolean;
  } = {},
): Promise<T> {
  const globals = program.opts<{ config?: string; verbose?: boolean }>();
  const loaded = loadConfig(process.env, globals.config);
  // Commands talk to people on stdout/stderr; engine logs only show with --verbose, on stderr.
  const logger = createLogger({ level: globals.verbose ? 'debug' : 'silent', destination: process.stderr });
  const app = await openStoreContext(loaded, logger, { create: opts.create ?? false });
  let connection: RedisClient | undefined;
  let engine: RefreshEngine | undefined;
  let alerts: ReturnType<typeof openCommandAlerts>;
  try {
    const redis = opts.redis === false ? ({ state: 'not_running' } as const) : await probeRedis(loaded, app);
    if (redis.state === 'connected') {
      connection = createQueueConnection(redis.endpoint);
      connection.on('error', () => {});
      alerts = openCommandAlerts({
        loaded,
        grants: app.grants,
        serviceState: app.serviceState,
        connection,
        logger,
      });
    }
    engine = createRefreshEngine(
      app,
      loaded.config,
      logger,
      connection ? { connection, ...(alerts ? { observers: [alerts.monitor] } : {}) } : {},
    );
    return await fn({ loaded, logger, app, engine, redis, ...(connection ? { connection } : {}) });
  } finally {
    await engine?.close();
    await alerts?.close();
    if (connection) await closeConnection(connection);
    await app.close();
  }
}

async function probeRedis(loaded: LoadedConfig, app: StoreContext): Promise<RedisHealth> {
  const configured = configuredRedis(loaded);
  const managed = configured ? undefined : managedRedisEndpoint(app.dataDir);
  const endpoint: RedisEndpoint | undefined = configured ?? (managed && { kind: 'url', url: managed.url });
  if (!endpoint) return { state: 'not_running' };
  const owner = managed ? { owner: { pid: managed.ownerPid, alive: managed.ownerAlive } } : {};
  try {
    await checkRedisReachable(endpoint, REDIS_PROBE_MS, managed ? null : undefined);
    return { state: 'connected', endpoint, ...owner };
  } catch (err) {
    // The message names the host, never the URL's password.
    return { state: 'unreachable', endpoint, error: (err as Error).message, ...owner };
  }
}
