import { z } from 'zod';
import { authorizeParamsSchema } from '../oauth/authorize-params.js';
import { rateTextSchema } from '../pacing/rate-limit.js';
import { DEFAULT_BACKOFF } from '../policy/backoff.js';
import { DEFAULT_UNEXPLAINED_RULE } from '../policy/failure-plan.js';
import { DEFAULT_REFRESH_TIMING } from '../policy/refresh-timing.js';

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
/** `7,1` or [7, 1]: the windows of a warning ahead, in days (fractions allowed, e.g. 0.5). */
const warningDays = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((d) => (d.trim() === '' ? Number.NaN : Number(d))) : v),
  z
    .array(z.number().positive('each warning window must be more than 0 days').max(365))
    .min(1, 'give at least one window in days, e.g. 7,1')
    .max(5, 'at most 5 warning windows'),
);

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
    secretExpires: z
      .union([z.iso.date(), z.iso.datetime({ offset: true })], {
        error: 'expected a date such as 2027-06-30 or an ISO 8601 time',
      })
      .transform((v) => Date.parse(v.length === 10 ? `${v}T00:00:00Z` : v))
      .optional()
      .describe(
        "when the client secret ends (a date: the day's start, UTC); client.secret_expiring warns ahead",
      ),
    spa: z
      .boolean()
      .optional()
      .describe('microsoft: a single-page-application registration (refresh tokens end 24 h after consent)'),
    testing: z
      .boolean()
      .optional()
      .describe('google: the app is in Testing status (refresh tokens end 7 days after consent)'),
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

/** Start-up settings: each field's `.describe()` is its row in the README's configuration table. */
export const configFields = z
  .object({
    dataDir: z
      .string()
      .min(1)
      .default('./data')
      .describe('folder for the SQLite db, the key file and the managed Redis'),
    databaseUrl: databaseUrlSchema
      .optional()
      .describe(
        '`postgres://user:password@host:port/db` (TLS by `sslmode`): the store every replica shares; unset, SQLite in the data folder',
      ),
    databasePoolSize: wholeNumber(1, 500).default(20).describe('PostgreSQL connections per process'),
    redisUrl: z
      .url({ protocol: /^rediss?$/, error: 'expected a redis:// or rediss:// URL' })
      .optional()
      .describe(
        'an existing Redis (`redis://` or `rediss://`); must use `maxmemory-policy noeviction`; `hash-max-listpack-value 128` halves its memory. Unset (and no sentinels or cluster), a managed `redis-server` is started',
      ),
    redisSentinels: hostPortList(26379, 'sentinel')
      .optional()
      .describe(
        'comma-separated sentinel `host:port`s, instead of `REDIS_URL` (an array in the config file)',
      ),
    // Queue keys are then hash-tagged ({prefix}) so that every key of a queue is in one slot, as BullMQ needs.
    redisClusterNodes: hostPortList(6379, 'cluster node')
      .optional()
      .describe(
        'comma-separated nodes of a Redis Cluster, instead of `REDIS_URL` (the rest are discovered); the queue prefix is then hash-tagged (`{grantkeeper}`)',
      ),
    redisSentinelName: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-"')
      .optional()
      .describe("the master's name the sentinels monitor (required with sentinels)"),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('`fatal` … `trace`, `silent`'),
    // At 150 ms per token request 16 in flight bound a worker to ~100 refreshes/s; 256 keep it
    // CPU-bound (`npm run bench -- --latency 150`).
    concurrency: wholeNumber(1, 1000)
      .default(DEFAULT_CONCURRENCY)
      .describe('refreshes in flight per process: sized for a provider answering in 100–300 ms'),
    requestTimeoutSeconds: seconds(300).default(15).describe('whole token request, connect to last byte'),
    leaseMarginSeconds: seconds(3600).default(30).describe('how long a lease outlives the request timeout'),
    // Invariant 2: on providers where replaying a spent refresh token may revoke the grant.
    inDoubtGraceSeconds: seconds(7 * 86_400)
      .default(600)
      .describe(
        "how long nobody re-sends a refresh token whose request's answer was lost (providers that revoke on replay)",
      ),
    reconcileIntervalSeconds: seconds(86_400)
      .default(120)
      .describe('how often Redis is checked against the db'),
    scheduleHorizonSeconds: seconds(30 * 86_400)
      .default(6 * 3600)
      .describe('grants due within this window have a job in Redis; later ones get theirs as they near'),
    shutdownGraceSeconds: seconds(3600)
      .default(30)
      .describe('how long SIGTERM waits for running refreshes to commit'),
    diskReserveMb: numeric(
      z
        .number({ error: 'expected a number of MiB' })
        .min(0, 'must be at least 0')
        .max(1024, 'must be at most 1024'),
    )
      .default(8)
      .describe(
        'space (MiB) set aside beside the db, given back when the disk fills so tokens a provider has already rotated can still be stored; `0` turns it off',
      ),
    queuePrefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, "_" or "-"')
      .default('grantkeeper')
      .describe('Redis key prefix'),
    refreshTiming: z
      .object({
        leadFraction: z
          .number()
          .min(0)
          .max(0.9)
          .default(DEFAULT_REFRESH_TIMING.leadFraction)
          .describe("lead before expiry, as a fraction of the access token's lifetime"),
        minLeadMs: ms.default(DEFAULT_REFRESH_TIMING.minLeadMs).describe('the shortest lead'),
        maxLeadMs: ms.default(DEFAULT_REFRESH_TIMING.maxLeadMs).describe('the longest lead'),
        jitterFraction: z
          .number()
          .min(0)
          .max(1)
          .default(DEFAULT_REFRESH_TIMING.jitterFraction)
          .describe('extra lead of up to this fraction of the lead, drawn per grant, so grants spread out'),
        minIntervalMs: ms
          .default(DEFAULT_REFRESH_TIMING.minIntervalMs)
          .describe('floor between two refreshes of a grant, whatever `expires_in` says'),
        maxLifetimeMs: z
          .number()
          .positive()
          .default(DEFAULT_REFRESH_TIMING.maxLifetimeMs)
          .describe('cap on an access lifetime, so a huge `expires_in` cannot push a refresh out of reach'),
      })
      .strict()
      .prefault({})
      .describe('when a grant is refreshed (config file only)'),
    backoff: z
      .object({
        baseMs: ms.default(DEFAULT_BACKOFF.baseMs).describe("the first retry's delay, doubled per failure"),
        maxMs: ms.default(DEFAULT_BACKOFF.maxMs).describe('the longest delay between retries'),
        maxRetryAfterMs: ms
          .default(DEFAULT_BACKOFF.maxRetryAfterMs)
          .describe("cap on a server's `Retry-After`, so a hostile value cannot park a grant for days"),
      })
      .strict()
      .prefault({})
      .describe('how transient failures are retried (config file only)'),
    // src/policy/failure-plan.ts decides with it.
    reconsentAfterUnexplained: z
      .object({
        count: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(DEFAULT_UNEXPLAINED_RULE.count)
          .describe('bare 4xx answers (no OAuth error) in a row'),
        spanSeconds: z
          .number()
          .min(0)
          .max(30 * 86_400)
          .default(DEFAULT_UNEXPLAINED_RULE.spanMs / 1000)
          .describe('over at least this span, before the grant needs a new consent'),
      })
      .strict()
      .prefault({})
      .describe('when an unexplained refusal becomes `needs_reconsent` (config file only)'),
    clients: z
      .array(configClientSchema)
      .default([])
      .describe(
        'OAuth clients registered at start-up ([below](#clients-in-the-config-file); config file only)',
      ),
    apiHost: z.string().min(1).default('127.0.0.1').describe('address the HTTP API binds to'),
    apiPort: wholeNumber(0, 65_535)
      .default(7420)
      .describe('its port; `0` picks a free one (logged at start)'),
    // DNS rebinding: only these Host headers are answered.
    apiAllowedHosts: z
      .preprocess(
        (v) => (typeof v === 'string' ? v.split(',').filter((h) => h.trim()) : v),
        z.array(allowedHost).max(50, 'at most 50 hosts'),
      )
      .default([])
      .describe(
        'comma-separated `host[:port]` Host headers answered besides the loopback names and the bind address (an array in the config file)',
      ),
    publicUrl: publicUrlSchema
      .optional()
      .describe(
        "the API's address as a browser elsewhere reaches it (https, or http on a loopback host as through an SSH tunnel): consent links are `<publicUrl>/connect/…`, and the provider redirects to `<publicUrl>/callback`, which must be registered with it ([consent links](#one-time-consent-links))",
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
      .default([])
      .describe('comma-separated alert webhooks (an array in the config file)'),
    failingAlertAfter: wholeNumber(1, 1000)
      .default(3)
      .describe('consecutive transient failures before `grant.failing` is sent'),
    expiryWarningDays: warningDays
      .default([7, 1])
      .describe(
        "days before a grant's hard end or consent deadline that `grant.expiring` is sent, once per window (comma-separated; an array in the config file)",
      ),
    secretWarningDays: warningDays
      .default([30])
      .describe(
        "days before a client secret's end date that `client.secret_expiring` is sent, once per window",
      ),
    // A label names an account: spans carry it only when the operator asks.
    traceGrantIds: flag
      .default(false)
      .describe(
        "`true` adds each grant's id and label to its spans ([Traces](#traces)); the `OTEL_*` variables are there too",
      ),
  })
  .strict();

export const configSchema = configFields
  // A stop that gives up before a token request can time out would exit with a refresh in flight,
  // whose rotated refresh token would then be lost.
  .refine((c) => c.shutdownGraceSeconds > c.requestTimeoutSeconds, {
    path: ['shutdownGraceSeconds'],
    message: 'must be longer than the request timeout, so a stop never abandons a refresh in flight',
  })
  // On a Redis Cluster every key of a BullMQ queue must hash to one slot: `{prefix}` does that.
  .transform((c) => (c.redisClusterNodes ? { ...c, queuePrefix: `{${c.queuePrefix}}` } : c));

export type Config = z.infer<typeof configSchema>;
/** What a config file (or a test) may give: every field with a default is optional. */
export type ConfigInput = z.input<typeof configSchema>;

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
  GRANTKEEPER_EXPIRY_WARNING_DAYS: 'expiryWarningDays',
  GRANTKEEPER_SECRET_WARNING_DAYS: 'secretWarningDays',
  GRANTKEEPER_TRACE_GRANT_IDS: 'traceGrantIds',
} as const satisfies Record<string, keyof Config>;

/**
 * Secrets come from the environment only, never from the config file, so the parsed config can be
 * logged: each variable, the `secrets` field it fills, and its row in the README.
 */
export const SECRET_ENV_VARS = {
  GRANTKEEPER_KEY: {
    field: 'key',
    describe:
      'sealing key: 32 random bytes, base64 (`openssl rand -base64 32`). Unset (and no key file or command), a key file in the data folder; with PostgreSQL one of the three key settings is required',
  },
  GRANTKEEPER_KEY_FILE: {
    field: 'keyFile',
    describe: 'a file holding the key (a mounted secret; must be `0600`)',
  },
  GRANTKEEPER_KEY_COMMAND: {
    field: 'keyCommand',
    describe: 'a command (`/bin/sh -c`) that prints the key, for secret managers',
  },
  GRANTKEEPER_PREVIOUS_KEYS: {
    field: 'previousKeys',
    describe: 'comma-separated older keys still able to open values during a rotation',
  },
  GRANTKEEPER_WEBHOOK_SECRET: {
    field: 'webhookSecret',
    describe: 'HMAC-SHA256 key that signs every webhook body (required with webhooks)',
  },
  GRANTKEEPER_REDIS_PASSWORD: {
    field: 'redisPassword',
    describe: "the password of the master and replicas behind Sentinel, or of the cluster's nodes",
  },
  GRANTKEEPER_REDIS_SENTINEL_PASSWORD: {
    field: 'redisSentinelPassword',
    describe: "the sentinels' own password, when they have one",
  },
} as const;

export type Secrets = {
  -readonly [K in keyof typeof SECRET_ENV_VARS as (typeof SECRET_ENV_VARS)[K]['field']]?: string;
};
