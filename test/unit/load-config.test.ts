import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';

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
      concurrency: 16,
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
    expect(config.concurrency).toBe(16);
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

  it('reports an unreadable or malformed file', () => {
    expect(() => loadConfig({}, join(dir, 'missing.json'))).toThrow(/cannot read the config file .*ENOENT/);
    expect(() => loadConfig({}, configFile('[1,2]'))).toThrow(/must hold a JSON object/);
    expect(() => loadConfig({}, configFile('{'))).toThrow(/is not valid JSON \(at character 1\)/);
    const leaky = configFile('{ "redisUrl": "redis://:hunter2@redis.internal", oops }');
    expect(() => loadConfig({}, leaky)).toThrow(/is not valid JSON/);
    expect(() => loadConfig({}, leaky)).not.toThrow(/hunter2/);
  });
});
