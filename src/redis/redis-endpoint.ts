import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { LoadedConfig } from '../config/load-config.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';

/** A connection to one Redis (directly or through Sentinel) or to a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/**
 * Where the service's Redis is: one URL (a single server, TLS by rediss://), a Sentinel group
 * that names the current master and moves it on failover, or a Redis Cluster (queue keys are then
 * hash-tagged into one slot: see configSchema). Carries passwords: never log it, only what
 * describeRedisEndpoint says.
 */
export type RedisEndpoint =
  | { kind: 'url'; url: string }
  | {
      kind: 'sentinel';
      sentinels: Array<{ host: string; port: number }>;
      /** The master's name in the sentinels' configuration. */
      name: string;
      password?: string;
      sentinelPassword?: string;
    }
  | {
      kind: 'cluster';
      /** Some of the cluster's nodes; the rest are discovered from them. */
      nodes: Array<{ host: string; port: number }>;
      password?: string;
    };

/** The endpoint without credentials: safe for logs and error messages. */
export function describeRedisEndpoint(endpoint: RedisEndpoint): string {
  if (endpoint.kind === 'cluster') {
    return `cluster via ${endpoint.nodes.map((s) => `${s.host}:${s.port}`).join(',')}`;
  }
  if (endpoint.kind === 'sentinel') {
    return `sentinel master "${endpoint.name}" via ${endpoint.sentinels.map((s) => `${s.host}:${s.port}`).join(',')}`;
  }
  try {
    const u = new URL(endpoint.url);
    return `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(unparseable Redis URL)';
  }
}

/** The Redis the configuration names (REDIS_URL or the Sentinel settings), or undefined for none. */
export function configuredRedis(loaded: LoadedConfig): RedisEndpoint | undefined {
  const { config, secrets } = loaded;
  const named = [
    config.redisUrl && 'REDIS_URL',
    config.redisSentinels && 'GRANTKEEPER_REDIS_SENTINELS',
    config.redisClusterNodes && 'GRANTKEEPER_REDIS_CLUSTER_NODES',
  ].filter(Boolean);
  if (named.length > 1) {
    throw new GrantkeeperError(
      'bad_config',
      `set one of ${named.join(', ')}, not several: each names the Redis to use`,
    );
  }
  if (config.redisClusterNodes) {
    return {
      kind: 'cluster',
      nodes: config.redisClusterNodes,
      ...(secrets.redisPassword ? { password: secrets.redisPassword } : {}),
    };
  }
  if (config.redisSentinels) {
    if (!config.redisSentinelName) {
      throw new GrantkeeperError(
        'bad_config',
        'GRANTKEEPER_REDIS_SENTINELS needs GRANTKEEPER_REDIS_SENTINEL_NAME, the master name the sentinels monitor',
      );
    }
    return {
      kind: 'sentinel',
      sentinels: config.redisSentinels,
      name: config.redisSentinelName,
      ...(secrets.redisPassword ? { password: secrets.redisPassword } : {}),
      ...(secrets.redisSentinelPassword ? { sentinelPassword: secrets.redisSentinelPassword } : {}),
    };
  }
  return config.redisUrl ? { kind: 'url', url: config.redisUrl } : undefined;
}

/**
 * A connection with `options` over the endpoint. Through Sentinel, ioredis asks the sentinels for
 * the master on every (re)connect, so a failover is a reconnect to the new master; a connection
 * that finds itself on a demoted replica (READONLY) reconnects too.
 */
export function connectRedis(endpoint: RedisEndpoint, options: RedisOptions = {}): RedisClient {
  if (endpoint.kind === 'url') return new Redis(endpoint.url, options);
  if (endpoint.kind === 'cluster') {
    const { retryStrategy, lazyConnect, enableOfflineQueue, ...perNode } = options;
    return new Cluster(endpoint.nodes, {
      redisOptions: { ...perNode, ...(endpoint.password ? { password: endpoint.password } : {}) },
      ...(lazyConnect === undefined ? {} : { lazyConnect }),
      ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
      ...(retryStrategy ? { clusterRetryStrategy: retryStrategy } : {}),
    });
  }
  return new Redis({
    ...options,
    sentinels: endpoint.sentinels,
    name: endpoint.name,
    ...(endpoint.password ? { password: endpoint.password } : {}),
    ...(endpoint.sentinelPassword ? { sentinelPassword: endpoint.sentinelPassword } : {}),
    ...(options.retryStrategy ? { sentinelRetryStrategy: options.retryStrategy } : {}),
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
    // A lost master is noticed from the sentinels' own announcement, not only at the next timeout.
    failoverDetector: true,
  });
}
