import { z } from 'zod';
import { authorizeParamsSchema } from '../oauth/authorize-params.js';
import { rateTextSchema } from '../pacing/rate-limit.js';

/** Environment values arrive as strings; a numeric-looking one becomes a number, anything else fails below. */
const numeric = (inner: z.ZodNumber) =>
  z.preprocess((v) => (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), inner);

const seconds = (max: number) =>
  numeric(
    z
      .number({ error: 'expected a number of seconds' })
      .positive('must be more than 0')
      .max(max, `must be at most ${max}`),
  );

const wholeNumber = (min: number, max: number) =>
  numeric(
    z
      .number({ error: 'expected a whole number' })
      .int('expected a whole number')
      .min(min, `must be at least ${min}`)
      .max(max, `must be at most ${max}`),
  );

/**
 * `host[:port]` as a Host header carries it: a DNS name, an IPv4 address or a bracketed IPv6
 * address, lower case. Shared with the API's Host check.
 */
export const HOST_PORT_PATTERN = /^(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::(\d{1,5}))?$/;

/** One allowed Host: `port` null admits the name on any port (behind a proxy it often has none). */
export interface AllowedHost {
  host: string;
  port: number | null;
}

const allowedHost = z
  .string()
  .trim()
  .toLowerCase()
  .regex(HOST_PORT_PATTERN, 'expected host or host:port (an IPv6 address in brackets)')
  .transform((value): AllowedHost => {
    const [, host = '', port] = HOST_PORT_PATTERN.exec(value) ?? [];
    return { host, port: port === undefined ? null : Number(port) };
  })
  .refine((h) => h.port === null || (h.port >= 1 && h.port <= 65_535), 'the port must be 1 to 65535');

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Where browsers reach the API: providers accept plain http redirect URIs only on the loopback
 * (RFC 8252 §8.3), and a consent link's token must not cross a network in clear. A path is kept
 * (a proxy's prefix); a trailing slash, query or fragment is not.
 */
export const publicUrlSchema = z
  .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
  // Refinements run even when the URL check failed: a value it refused passes here, already reported.
  .refine((value) => {
    const url = URL.parse(value);
    return url?.protocol !== 'http:' || LOOPBACK_HOSTS.has(url.hostname);
  }, 'must be https (plain http only on 127.0.0.1, localhost or [::1], e.g. through an SSH tunnel)')
  .refine((value) => {
    const url = URL.parse(value);
    return !url || (url.search === '' && url.hash === '' && url.username === '' && url.password === '');
  }, 'must have no query, fragment or credentials')
  .transform((value) => value.replace(/\/+$/, ''));

/** Refreshes in flight per process. */
export const DEFAULT_CONCURRENCY = 256;

/** An on/off switch; from the environment as `true` or `false`. */
const flag = z.preprocess(
  (v) => (v === 'true' ? true : v === 'false' ? false : v),
  z.boolean({ error: 'expected true or false' }),
);

const endpointUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });

/** An OAuth client declared in the config file; its secret comes from a named environment variable. */
export const configClientSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'letters, digits, ".", "_", "@" or "-", at most 64'),
    provider: z.enum(['x', 'microsoft', 'google', 'oidc']),
    tenant: z.string().min(1).optional(),
    issuer: endpointUrl.optional(),
    endpoints: z
      .object({
        authorization: endpointUrl,
        token: endpointUrl,
        revocation: endpointUrl.optional(),
        userinfo: endpointUrl.optional(),
        /** RFC 8628's device authorization endpoint, for `seed --device`. */
        device: endpointUrl.optional(),
      })
      .strict()
      .optional(),
    clientId: z.string().min(1),
    clientSecretEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name')
      .optional(),
    authMethod: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
    scopes: z.array(z.string().min(1)).optional(),
    redirectUri: endpointUrl.optional(),
    /** The client's token-endpoint budget across every replica, e.g. "50/s". */
    rate: rateTextSchema.optional(),
    /** Requests that may go at once on top of the rate (default 1: evenly spaced). */
    burst: z.int().min(1).max(10_000).optional(),
    authorizeParams: authorizeParamsSchema.optional(),
  })
  .strict();
export type ConfigClient = z.infer<typeof configClientSchema>;

const ms = z.number().nonnegative();

/** A postgres:// URL; the message never repeats the value, which may hold a password. */
export const databaseUrlSchema = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && url.hostname !== '';
  } catch {
    return false;
  }
}, 'expected a postgres://user:password@host:port/database URL');

/** `host[:port],…` (an array in the config file), each port defaulting to `defaultPort`. */
function hostPortList(defaultPort: number, what: string) {
  return z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean)
        : v,
    z
      .array(
        z
          .string()
          .regex(HOST_PORT_PATTERN, 'expected host:port')
          .transform((value, ctx) => {
            const [, host = '', port] = HOST_PORT_PATTERN.exec(value.toLowerCase()) ?? [];
            const n = Number(port ?? defaultPort);
            if (!(n >= 1 && n <= 65_535))
              ctx.addIssue({ code: 'custom', message: 'the port must be 1 to 65535' });
            return { host: host.replace(/^\[(.*)\]$/, '$1'), port: n };
          }),
      )
      .min(1, `expected at least one ${what}`)
      .max(16, `at most 16 ${what}s`),
  );
}

export const configSchema = z
  .object({
    dataDir: z.string().min(1).default('./data'),
    // Without it, the store is SQLite in the data folder; with it, every replica shares PostgreSQL.
    databaseUrl: databaseUrlSchema.optional(),
    databasePoolSize: wholeNumber(1, 500).default(20),
    redisUrl: z.url({ protocol: /^rediss?$/, error: 'expected a redis:// or rediss:// URL' }).optional(),
    // A Sentinel group instead of one URL: the sentinels' host:port list and the master's name.
    redisSentinels: hostPortList(26379, 'sentinel').optional(),
    // A Redis Cluster instead: some of its nodes (the rest are discovered). Queue keys are then
    // hash-tagged ({prefix}) so that every key of a queue is in one slot, as BullMQ needs.
    redisClusterNodes: hostPortList(6379, 'cluster node').optional(),
    redisSentinelName: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-"')
      .optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    // Sized for provider latency, not CPU: at 150 ms per token request 16 in flight bound a worker to
    // ~100 refreshes/s; 256 keep it CPU-bound (`npm run bench -- --latency 150`).
    concurrency: wholeNumber(1, 1000).default(DEFAULT_CONCURRENCY),
    requestTimeoutSeconds: seconds(300).default(15),
    leaseMarginSeconds: seconds(3600).default(30),
    // How long nobody sends a refresh token whose earlier request may have reached the provider
    // without its answer reaching us (a timeout, a crash, a pause), on providers where replaying a
    // spent refresh token may revoke the grant (invariant 2).
    inDoubtGraceSeconds: seconds(7 * 86_400).default(600),
    reconcileIntervalSeconds: seconds(86_400).default(120),
    scheduleHorizonSeconds: seconds(30 * 86_400).default(6 * 3600),
    shutdownGraceSeconds: seconds(3600).default(30),
    // Set aside beside the database and given back when the disk fills, so tokens a provider has
    // already rotated can still be stored. 0 turns it off.
    diskReserveMb: numeric(
      z
        .number({ error: 'expected a number of MiB' })
        .min(0, 'must be at least 0')
        .max(1024, 'must be at most 1024'),
    ).default(8),
    queuePrefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, "_" or "-"')
      .default('grantkeeper'),
    refreshTiming: z
      .object({
        leadFraction: z.number().min(0).max(0.9),
        minLeadMs: ms,
        maxLeadMs: ms,
        jitterFraction: z.number().min(0).max(1),
        minIntervalMs: ms,
        maxLifetimeMs: z.number().positive(),
      })
      .partial()
      .strict()
      .default({}),
    backoff: z.object({ baseMs: ms, maxMs: ms, maxRetryAfterMs: ms }).partial().strict().default({}),
    // An HTTP 4xx without an OAuth error body this many times in a row, over at least this span,
    // makes the grant need a new consent (src/policy/failure-plan.ts).
    reconsentAfterUnexplained: z
      .object({
        count: z.number().int().min(1).max(1000),
        spanSeconds: z
          .number()
          .min(0)
          .max(30 * 86_400),
      })
      .partial()
      .strict()
      .default({}),
    clients: z.array(configClientSchema).default([]),
    // HTTP API, metrics and alerts (issue #4).
    apiHost: z.string().min(1).default('127.0.0.1'),
    apiPort: wholeNumber(0, 65_535).default(7420),
    // Host headers the API answers besides the loopback names and the bind address (DNS rebinding).
    apiAllowedHosts: z
      .preprocess(
        (v) => (typeof v === 'string' ? v.split(',').filter((h) => h.trim()) : v),
        z.array(allowedHost).max(50, 'at most 50 hosts'),
      )
      .default([]),
    publicUrl: publicUrlSchema
      .optional()
      .describe(
        "The API's address as a browser elsewhere reaches it (https, or http on a loopback host as through an SSH tunnel): consent links are <publicUrl>/connect/…, and the provider redirects to <publicUrl>/callback, which must be registered with it",
      ),
    webhookUrls: z
      .preprocess(
        (v) =>
          typeof v === 'string'
            ? v
                .split(',')
                .map((u) => u.trim())
                .filter(Boolean)
            : v,
        z.array(endpointUrl).max(20, 'at most 20 webhook URLs'),
      )
      .default([]),
    failingAlertAfter: wholeNumber(1, 1000).default(3),
    // Spans carry the grant's id and label only when the operator asks: a label names an account.
    traceGrantIds: flag.default(false),
  })
  .strict()
  // A stop that gives up before a token request can time out would exit with a refresh in flight,
  // whose rotated refresh token would then be lost.
  .refine((c) => c.shutdownGraceSeconds > c.requestTimeoutSeconds, {
    path: ['shutdownGraceSeconds'],
    message: 'must be longer than the request timeout, so a stop never abandons a refresh in flight',
  })
  // On a Redis Cluster every key of a BullMQ queue must hash to one slot: `{prefix}` does that.
  .transform((c) => (c.redisClusterNodes ? { ...c, queuePrefix: `{${c.queuePrefix}}` } : c));

export type Config = z.infer<typeof configSchema>;

/** Environment variables and the config field each one sets. */
export const ENV_VARS = {
  GRANTKEEPER_DATA_DIR: 'dataDir',
  GRANTKEEPER_DATABASE_URL: 'databaseUrl',
  GRANTKEEPER_DATABASE_POOL_SIZE: 'databasePoolSize',
  REDIS_URL: 'redisUrl',
  GRANTKEEPER_REDIS_SENTINELS: 'redisSentinels',
  GRANTKEEPER_REDIS_SENTINEL_NAME: 'redisSentinelName',
  GRANTKEEPER_REDIS_CLUSTER_NODES: 'redisClusterNodes',
  GRANTKEEPER_LOG_LEVEL: 'logLevel',
  GRANTKEEPER_CONCURRENCY: 'concurrency',
  GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: 'requestTimeoutSeconds',
  GRANTKEEPER_LEASE_MARGIN_SECONDS: 'leaseMarginSeconds',
  GRANTKEEPER_IN_DOUBT_GRACE_SECONDS: 'inDoubtGraceSeconds',
  GRANTKEEPER_RECONCILE_INTERVAL_SECONDS: 'reconcileIntervalSeconds',
  GRANTKEEPER_SCHEDULE_HORIZON_SECONDS: 'scheduleHorizonSeconds',
  GRANTKEEPER_SHUTDOWN_GRACE_SECONDS: 'shutdownGraceSeconds',
  GRANTKEEPER_DISK_RESERVE_MB: 'diskReserveMb',
  GRANTKEEPER_QUEUE_PREFIX: 'queuePrefix',
  GRANTKEEPER_API_HOST: 'apiHost',
  GRANTKEEPER_API_PORT: 'apiPort',
  GRANTKEEPER_API_ALLOWED_HOSTS: 'apiAllowedHosts',
  GRANTKEEPER_PUBLIC_URL: 'publicUrl',
  GRANTKEEPER_WEBHOOK_URLS: 'webhookUrls',
  GRANTKEEPER_FAILING_ALERT_AFTER: 'failingAlertAfter',
  GRANTKEEPER_TRACE_GRANT_IDS: 'traceGrantIds',
} as const satisfies Record<string, keyof Config>;
