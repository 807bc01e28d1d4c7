import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ENV_VARS } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';

const RUNS = { numRuns: 1500 };
/** Distinctive enough that no other echoed value can contain one by chance. */
const secretArb = fc.stringMatching(/^[a-f0-9]{20}$/).map((s) => `Zq${s}`);
// GRANTKEEPER_CONFIG is left out: arbitrary paths would make the test read arbitrary files.
const names = Object.keys(ENV_VARS) as Array<keyof typeof ENV_VARS>;

const value = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom('', ' ', '0', '-1', '1e999', 'NaN', '16', '0.5', '65536', 'debug', 'silent', '::', 'true'),
  fc.integer().map(String),
  fc.double().map(String),
);

const redisUrl = (password: string) =>
  fc.oneof(
    fc.constantFrom(
      `redis://:${password}@127.0.0.1:6380`,
      `rediss://user:${password}@cache.example.com:6380/2`,
      `redis://user:${password}@`,
      `redis://:${password}@host:notaport`,
      `ftp://x:${password}@host`,
      `redis://${password}`,
      `${password}`,
      `redis://:${encodeURIComponent(`${password}/?#`)}@[::1`,
    ),
    fc.tuple(fc.string(), fc.string()).map(([a, b]) => `${a}${password}${b}`),
  );

const webhookUrls = (token: string) =>
  fc.oneof(
    fc.constantFrom(
      `https://hooks.example.com/${token}`,
      `https://hooks.example.com/x?token=${token},not a url`,
      `http://u:${token}@example.com/`,
      `${token},${token}`,
      `javascript:${token}`,
    ),
    fc.tuple(fc.string(), fc.string()).map(([a, b]) => `${a}${token}${b}`),
  );

const envArb = fc
  .record({
    password: secretArb,
    hookToken: secretArb,
    key: secretArb,
    previous: secretArb,
    webhookSecret: secretArb,
    plain: fc.dictionary(fc.constantFrom(...names), value),
    junkNames: fc.dictionary(fc.string(), value, { maxKeys: 3 }),
  })
  .chain((r) =>
    fc
      .tuple(fc.option(redisUrl(r.password)), fc.option(webhookUrls(r.hookToken)))
      .map(([redis, hooks]) => ({ ...r, redis, hooks })),
  );

describe('loadConfig on arbitrary environments', () => {
  it('returns a config or throws a bad_config error, never anything else', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...names, 'GRANTKEEPER_KEY', 'HOME'), value), (env) => {
        try {
          const loaded = loadConfig(env);
          expect(loaded.config.concurrency).toBeGreaterThan(0);
          expect(loaded.config.apiHost).toBeTypeOf('string');
        } catch (err) {
          expect(err).toBeInstanceOf(GrantkeeperError);
          expect(err).toHaveProperty('code', 'bad_config');
          expect((err as Error).message).toMatch(/^invalid configuration: /);
        }
      }),
      RUNS,
    );
  });

  it('never echoes REDIS_URL, webhook URLs, keys or the webhook secret', () => {
    let failures = 0;
    fc.assert(
      fc.property(envArb, (r) => {
        const env: NodeJS.ProcessEnv = {
          ...r.junkNames,
          ...r.plain,
          GRANTKEEPER_KEY: r.key,
          GRANTKEEPER_PREVIOUS_KEYS: r.previous,
          GRANTKEEPER_WEBHOOK_SECRET: r.webhookSecret,
          ...(r.redis === null ? {} : { REDIS_URL: r.redis }),
          ...(r.hooks === null ? {} : { GRANTKEEPER_WEBHOOK_URLS: r.hooks }),
        };
        let message: string;
        try {
          const loaded = loadConfig(env);
          // Secrets stay out of the loggable config object.
          message = JSON.stringify(loaded.config);
          for (const s of [r.key, r.previous, r.webhookSecret]) expect(message).not.toContain(s);
          return;
        } catch (err) {
          expect(err).toBeInstanceOf(GrantkeeperError);
          expect(err).toHaveProperty('code', 'bad_config');
          message = (err as Error).message;
          failures++;
        }
        for (const s of [r.password, r.hookToken, r.key, r.previous, r.webhookSecret]) {
          expect(message).not.toContain(s);
        }
        if (r.redis) expect(message).not.toContain(r.redis);
      }),
      RUNS,
    );
    // The generator must actually exercise the error path.
    expect(failures).toBeGreaterThan(RUNS.numRuns / 4);
  });
});
