import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createKeeper } from '../../src/library/index.js';
import { findFreePort } from '../../src/redis/managed-redis.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { expectOneClearLine, runCli, spawnCli } from '../support/cli.js';
import { removeDir, tempDataDir } from '../support/engine.js';

const dirs: string[] = [];
const dataDir = () => {
  const d = tempDataDir();
  dirs.push(d);
  return d;
};
const key = () => randomBytes(32).toString('base64');

afterAll(() => {
  for (const d of dirs) removeDir(d);
});

describe('grantkeeper run: bad input exits with one clear line', () => {
  it('rejects a malformed environment value, naming the variable', async () => {
    const result = await runCli(['run'], {
      GRANTKEEPER_DATA_DIR: dataDir(),
      GRANTKEEPER_CONCURRENCY: 'lots',
    });
    expectOneClearLine(result, /GRANTKEEPER_CONCURRENCY="lots": expected a whole number/);
  });

  it('rejects a key that is not 32 bytes of base64, without echoing it', async () => {
    const result = await runCli(['run'], {
      GRANTKEEPER_DATA_DIR: dataDir(),
      GRANTKEEPER_KEY: 'c2hvcnQta2V5',
    });
    expectOneClearLine(result, /GRANTKEEPER_KEY must be 32/);
    expect(result.stderr).not.toContain('c2hvcnQta2V5');
  });

  it('reports a config-file client whose secret variable is unset', async () => {
    const dir = dataDir();
    const configPath = join(dir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        clients: [{ name: 'bot', provider: 'x', clientId: 'abc', clientSecretEnv: 'X_CLIENT_SECRET' }],
      }),
    );
    const result = await runCli(['run', '--config', configPath], {
      GRANTKEEPER_DATA_DIR: dir,
      GRANTKEEPER_KEY: key(),
      REDIS_URL: 'redis://127.0.0.1:1',
    });
    expectOneClearLine(result, /client "bot" reads its secret from X_CLIENT_SECRET, which is not set/);
  });

  it('reports a config file that is not valid JSON', async () => {
    const dir = dataDir();
    const configPath = join(dir, 'config.json');
    writeFileSync(configPath, '{ "concurrency": 4,');
    const result = await runCli(['run', '--config', configPath], { GRANTKEEPER_DATA_DIR: dir });
    expectOneClearLine(result, /is not valid JSON/);
  });

  it('reports an unreachable Redis', async () => {
    const port = await findFreePort();
    const result = await runCli(['run'], {
      GRANTKEEPER_DATA_DIR: dataDir(),
      GRANTKEEPER_KEY: key(),
      REDIS_URL: `redis://:hunter2@127.0.0.1:${port}`,
    });
    expectOneClearLine(result, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port}`));
    expect(result.stderr).not.toContain('hunter2');
  });

  it('names both key ids when the key does not open the store', async () => {
    const dir = dataDir();
    const port = await findFreePort();
    const env = { GRANTKEEPER_DATA_DIR: dir, REDIS_URL: `redis://127.0.0.1:${port}` };
    // The first run seals the key check with key A, then fails on Redis; the second uses key B.
    await runCli(['run'], { ...env, GRANTKEEPER_KEY: key() });
    const result = await runCli(['run'], { ...env, GRANTKEEPER_KEY: key() });
    expectOneClearLine(result, /sealed with key k[0-9a-f]{10}.*loaded key.*k[0-9a-f]{10}/);
  });

  it('reports a database locked by another process', async () => {
    const dir = dataDir();
    mkdirSync(dir, { recursive: true });
    const dbPath = join(dir, DB_FILE_NAME);
    writeFileSync(dbPath, '', { mode: 0o600 });
    const holder = new Database(dbPath);
    holder.exec('CREATE TABLE hold (x); BEGIN EXCLUSIVE; INSERT INTO hold VALUES (1);');
    try {
      const result = await runCli(['run'], { GRANTKEEPER_DATA_DIR: dir, GRANTKEEPER_KEY: key() });
      expectOneClearLine(result, /is locked by another process/);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
  });

  it('reports a data folder that cannot be created', async () => {
    const dir = dataDir();
    const file = join(dir, 'not-a-folder');
    writeFileSync(file, '');
    const result = await runCli(['run'], { GRANTKEEPER_DATA_DIR: join(file, 'data') });
    expectOneClearLine(result, /cannot create the data folder/);
  });

  it('shows the stack trace with --verbose', async () => {
    const result = await runCli(['--verbose', 'run'], {
      GRANTKEEPER_DATA_DIR: dataDir(),
      GRANTKEEPER_CONCURRENCY: '0',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/GRANTKEEPER_CONCURRENCY="0": must be at least 1/);
    expect(result.stderr).toMatch(/\n\s+at /);
  });

  it('answers an unknown command with usage and exit code 2', async () => {
    const result = await runCli(['frobnicate'], {});
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown command/);
  });
});

describe('everyday edges', () => {
  it('exits quietly when its reader goes away (grantkeeper grants | head -1)', async () => {
    const cli = spawnCli(['--help'], { GRANTKEEPER_DATA_DIR: dataDir() });
    // The pipe closes before the help is written: every write meets EPIPE.
    cli.child.stdout?.destroy();
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
  });
});

describe('read-only commands never create a store', () => {
  it.each([
    [['token', '@ourbot']],
    [['grants']],
    [['grant', 'show', '@ourbot']],
    [['status']],
    [['failed']],
    [['apikey', 'list']],
  ])('grantkeeper %s on a folder without one says so and creates nothing', async (args) => {
    const missing = join(dataDir(), 'typo');
    const result = await runCli(args, { GRANTKEEPER_DATA_DIR: missing, GRANTKEEPER_KEY: key() });
    expectOneClearLine(result, /no grantkeeper store at .*typo; set GRANTKEEPER_DATA_DIR/);
    expect(existsSync(missing)).toBe(false);
  });

  it('createKeeper({ env }) refuses too', async () => {
    const missing = join(dataDir(), 'typo');
    await expect(
      createKeeper({ env: { GRANTKEEPER_DATA_DIR: missing, GRANTKEEPER_LOG_LEVEL: 'silent' } }),
    ).rejects.toThrow(/no grantkeeper store at/);
    expect(existsSync(missing)).toBe(false);
  });
});
