import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { DEFAULT_BACKOFF } from '../../src/policy/backoff.js';
import { DEFAULT_UNEXPLAINED_RULE } from '../../src/policy/failure-plan.js';
import { DEFAULT_REFRESH_TIMING } from '../../src/policy/refresh-timing.js';
import { configuredRedis, describeRedisEndpoint } from '../../src/redis/redis-endpoint.js';

const dir = mkdtempSync(join(tmpdir(), 'gk-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configFile(content: unknown): string {
  const path = join(dir, `c-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('loadConfig', () => {
  it('gives embedded defaults for an empty environment', () => {
    const { config, secrets } = loadConfig({});
    expect(config).toMatchObject({
      dataDir: './data',
      logLevel: 'info',
      concurrency: 256,
      requestTimeoutSeconds: 15,
      reconcileIntervalSeconds: 120,
      clients: [],
    });
    expect(config.redisUrl).toBeUndefined();
    expect(secrets).toEqual({});
  });

  it('parses numeric strings from the environment and lets them override the file', () => {
    const path = configFile({ concurrency: 4, reconcileIntervalSeconds: 30 });
    const { config } = loadConfig(
      { GRANTKEEPER_CONFIG: path, GRANTKEEPER_CONCURRENCY: '32', GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '2.5' },
      undefined,
    );
    expect(config.concurrency).toBe(32);
    expect(config.reconcileIntervalSeconds).toBe(30);
    expect(config.requestTimeoutSeconds).toBe(2.5);
  });

  it('treats empty variables as unset (docker-compose passes them empty)', () => {
    const { config, secrets } = loadConfig({
      REDIS_URL: '',
      GRANTKEEPER_KEY: ' ',
      GRANTKEEPER_CONCURRENCY: '',
    });
    expect(config.redisUrl).toBeUndefined();
    expect(config.concurrency).toBe(256);
    expect(secrets.key).toBeUndefined();
  });

  it.each([
    [{ GRANTKEEPER_CONCURRENCY: '0' }, /GRANTKEEPER_CONCURRENCY="0": must be at least 1/],
    [{ GRANTKEEPER_CONCURRENCY: '2.5' }, /GRANTKEEPER_CONCURRENCY="2.5": expected a whole number/],
    [
      { GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: 'soon' },
      /GRANTKEEPER_REQUEST_TIMEOUT_SECONDS="soon": expected a number/,
    ],
    [{ GRANTKEEPER_LOG_LEVEL: 'loud' }, /GRANTKEEPER_LOG_LEVEL="loud"/],
    [{ GRANTKEEPER_QUEUE_PREFIX: 'a:b' }, /GRANTKEEPER_QUEUE_PREFIX="a:b"/],
    [
      { GRANTKEEPER_SHUTDOWN_GRACE_SECONDS: '10', GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '15' },
      /GRANTKEEPER_SHUTDOWN_GRACE_SECONDS="10": must be longer than the request timeout/,
    ],
  ])('rejects %o with a message naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('keeps grant ids and labels out of traces unless GRANTKEEPER_TRACE_GRANT_IDS is true', () => {
    expect(loadConfig({}).config.traceGrantIds).toBe(false);
    expect(loadConfig({ GRANTKEEPER_TRACE_GRANT_IDS: 'true' }).config.traceGrantIds).toBe(true);
    expect(loadConfig({ GRANTKEEPER_TRACE_GRANT_IDS: 'false' }).config.traceGrantIds).toBe(false);
    expect(() => loadConfig({ GRANTKEEPER_TRACE_GRANT_IDS: 'yes' })).toThrow(
      'GRANTKEEPER_TRACE_GRANT_IDS="yes": expected true or false',
    );
  });

  it('never echoes a Redis URL, which may hold a password', () => {
    expect(() => loadConfig({ REDIS_URL: 'http://user:hunter2@host' })).toThrow(
      /^invalid configuration: REDIS_URL: /,
    );
    try {
      loadConfig({ REDIS_URL: 'http://user:hunter2@host' });
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });

  it('fills the policies a config file sets in part from their defaults', () => {
    const { config } = loadConfig(
      {},
      configFile({ refreshTiming: { leadFraction: 0.3 }, backoff: { maxMs: 1000 } }),
    );
    expect(config.refreshTiming).toEqual({ ...DEFAULT_REFRESH_TIMING, leadFraction: 0.3 });
    expect(config.backoff).toEqual({ ...DEFAULT_BACKOFF, maxMs: 1000 });
    expect(config.reconsentAfterUnexplained).toEqual({
      count: DEFAULT_UNEXPLAINED_RULE.count,
      spanSeconds: DEFAULT_UNEXPLAINED_RULE.spanMs / 1000,
    });
    expect(() => loadConfig({}, configFile({ backoff: { baseMs: -1 } }))).toThrow(/backoff\.baseMs/);
  });

  it('names the file and field for a bad config-file value, and rejects unknown keys', () => {
    const path = configFile({ concurrency: 'many', colour: 'blue' });
    expect(() => loadConfig({}, path)).toThrow(
      new RegExp(`concurrency in ${path}.*; \\(top level\\) in ${path}`),
    );
  });

  it('validates declared clients', () => {
    const path = configFile({ clients: [{ name: 'x', provider: 'twitter', clientId: 'id' }] });
    expect(() => loadConfig({}, path)).toThrow(/clients\.0\.provider/);
    const secretInFile = configFile({
      clients: [{ name: 'x', provider: 'x', clientId: 'id', clientSecret: 'oops' }],
    });
    expect(() => loadConfig({}, secretInFile)).toThrow(/clients\.0/);
  });

  it('reads warning windows and a config-file client secret end date', () => {
    const path = configFile({
      expiryWarningDays: [14, 2],
      clients: [
        { name: 'ms', provider: 'microsoft', clientId: 'id', secretExpires: '2027-06-30', spa: true },
      ],
    });
    const { config } = loadConfig({ GRANTKEEPER_SECRET_WARNING_DAYS: '45, 10' }, path);
    expect(config.expiryWarningDays).toEqual([14, 2]);
    expect(config.secretWarningDays).toEqual([45, 10]);
    expect(config.clients[0]).toMatchObject({ secretExpires: Date.parse('2027-06-30T00:00:00Z'), spa: true });
    expect(loadConfig({}, configFile({})).config).toMatchObject({
      expiryWarningDays: [7, 1],
      secretWarningDays: [30],
    });
    expect(() => loadConfig({ GRANTKEEPER_EXPIRY_WARNING_DAYS: '7,,1' }, configFile({}))).toThrow(
      /expiryWarningDays.*more than 0 days|expected number/,
    );
    const badDate = configFile({
      clients: [{ name: 'ms', provider: 'microsoft', clientId: 'id', secretExpires: 'June' }],
    });
    expect(() => loadConfig({}, badDate)).toThrow(
      /clients\.0\.secretExpires.*expected a date such as 2027-06-30/,
    );
  });

  it('reports an unreadable or malformed file', () => {
    expect(() => loadConfig({}, join(dir, 'missing.json'))).toThrow(/cannot read the config file .*ENOENT/);
    expect(() => loadConfig({}, configFile('[1,2]'))).toThrow(/must hold a JSON object/);
    expect(() => loadConfig({}, configFile('{'))).toThrow(/is not valid JSON \(at character 1\)/);
    const leaky = configFile('{ "redisUrl": "redis://:hunter2@redis.internal", oops }');
    expect(() => loadConfig({}, leaky)).toThrow(/is not valid JSON/);
    expect(() => loadConfig({}, leaky)).not.toThrow(/hunter2/);
  });
});

describe('loadConfig: the shared store and Redis for several machines', () => {
  it('takes a postgres URL and refuses a malformed one without repeating it', () => {
    const url = 'postgresql://gk:pw@db.internal:5432/grantkeeper?sslmode=require';
    expect(loadConfig({ GRANTKEEPER_DATABASE_URL: url }).config.databaseUrl).toBe(url);
    for (const bad of ['mysql://gk:hunter2x@db/x', 'postgres://gk:hunter2x@/x', 'not a url hunter2x']) {
      expect(() => loadConfig({ GRANTKEEPER_DATABASE_URL: bad })).toThrow(
        /GRANTKEEPER_DATABASE_URL: expected a postgres:\/\//,
      );
      try {
        loadConfig({ GRANTKEEPER_DATABASE_URL: bad });
      } catch (err) {
        expect((err as Error).message).not.toContain('hunter2x');
      }
    }
  });

  it('parses the sentinel list, default port 26379, and keeps the passwords out of the config', () => {
    const { config, secrets } = loadConfig({
      GRANTKEEPER_REDIS_SENTINELS: 'a.internal:26380, b.internal,[::1]:26381',
      GRANTKEEPER_REDIS_SENTINEL_NAME: 'mymaster',
      GRANTKEEPER_REDIS_PASSWORD: 'redis-pw',
      GRANTKEEPER_REDIS_SENTINEL_PASSWORD: 'sentinel-pw',
    });
    expect(config.redisSentinels).toEqual([
      { host: 'a.internal', port: 26380 },
      { host: 'b.internal', port: 26379 },
      { host: '::1', port: 26381 },
    ]);
    expect(config.redisSentinelName).toBe('mymaster');
    expect(JSON.stringify(config)).not.toMatch(/-pw/);
    expect(secrets).toMatchObject({ redisPassword: 'redis-pw', redisSentinelPassword: 'sentinel-pw' });
    expect(() => loadConfig({ GRANTKEEPER_REDIS_SENTINELS: 'a:99999' })).toThrow(/port must be 1 to 65535/);
  });

  it('refuses two key sources at once', () => {
    expect(() => loadConfig({ GRANTKEEPER_KEY: 'x', GRANTKEEPER_KEY_COMMAND: 'vault read' })).toThrow(
      /set only one of GRANTKEEPER_KEY, GRANTKEEPER_KEY_COMMAND/,
    );
  });
});

describe('configuredRedis', () => {
  it('is a URL, a Sentinel group, or nothing; never both, never sentinels without a name', () => {
    expect(configuredRedis(loadConfig({}))).toBeUndefined();
    expect(configuredRedis(loadConfig({ REDIS_URL: 'rediss://r.internal:6380' }))).toEqual({
      kind: 'url',
      url: 'rediss://r.internal:6380',
    });
    expect(
      configuredRedis(
        loadConfig({ GRANTKEEPER_REDIS_SENTINELS: 's1:26379', GRANTKEEPER_REDIS_SENTINEL_NAME: 'm' }),
      ),
    ).toEqual({ kind: 'sentinel', sentinels: [{ host: 's1', port: 26379 }], name: 'm' });
    expect(() => configuredRedis(loadConfig({ GRANTKEEPER_REDIS_SENTINELS: 's1:26379' }))).toThrow(
      /needs GRANTKEEPER_REDIS_SENTINEL_NAME/,
    );
    expect(() =>
      configuredRedis(
        loadConfig({
          REDIS_URL: 'redis://r:6379',
          GRANTKEEPER_REDIS_SENTINELS: 's1:26379',
          GRANTKEEPER_REDIS_SENTINEL_NAME: 'm',
        }),
      ),
    ).toThrow(/not several/);
  });

  it('describes either without its passwords', () => {
    expect(describeRedisEndpoint({ kind: 'url', url: 'redis://:pw@r.internal:6379/2' })).toBe(
      'redis://r.internal:6379/2',
    );
    expect(
      describeRedisEndpoint({
        kind: 'sentinel',
        sentinels: [{ host: 's1', port: 26379 }],
        name: 'm',
        password: 'pw',
      }),
    ).toBe('sentinel master "m" via s1:26379');
  });
});

describe('loadConfig: a Redis Cluster', () => {
  it('hash-tags the queue prefix so each queue is in one slot; one Redis setting only', () => {
    const { config } = loadConfig({
      GRANTKEEPER_REDIS_CLUSTER_NODES: 'n1:7000,n2',
      GRANTKEEPER_QUEUE_PREFIX: 'gk',
    });
    expect(config.redisClusterNodes).toEqual([
      { host: 'n1', port: 7000 },
      { host: 'n2', port: 6379 },
    ]);
    expect(config.queuePrefix).toBe('{gk}');
    expect(loadConfig({ GRANTKEEPER_QUEUE_PREFIX: 'gk' }).config.queuePrefix).toBe('gk');
    expect(configuredRedis(loadConfig({ GRANTKEEPER_REDIS_CLUSTER_NODES: 'n1:7000' }))).toEqual({
      kind: 'cluster',
      nodes: [{ host: 'n1', port: 7000 }],
    });
    expect(() =>
      configuredRedis(
        loadConfig({ REDIS_URL: 'redis://r:6379', GRANTKEEPER_REDIS_CLUSTER_NODES: 'n1:7000' }),
      ),
    ).toThrow(/set one of REDIS_URL, GRANTKEEPER_REDIS_CLUSTER_NODES, not several/);
  });
});
