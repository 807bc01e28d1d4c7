import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KEY_FILE_NAME, loadKeyring } from '../../src/crypto/key-source.js';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import { createLogger } from '../../src/log/logger.js';
import { DB_FILE_NAME, openSqliteDatabase } from '../../src/store/sqlite/sqlite-database.js';
import { removeDir } from '../support/engine.js';

const dirs: string[] = [];
const freshDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'gk-modes-'));
  dirs.push(d);
  return d;
};
const mode = (path: string) => statSync(path).mode & 0o777;
const silent = createLogger({ level: 'silent' });

afterAll(() => {
  for (const d of dirs) removeDir(d);
});

describe('file modes of the store and the key', () => {
  it('creates the data folder 0700, and the db, WAL, SHM and key files 0600 even under umask 000', async () => {
    const old = process.umask(0);
    try {
      const dataDir = join(freshDir(), 'data');
      const store = openSqliteDatabase({ dataDir });
      store.sqlite.prepare('create table t (x)').run();
      store.sqlite.prepare('insert into t values (1)').run();
      await loadKeyring({ dataDir, logger: silent });
      expect(mode(dataDir)).toBe(0o700);
      const files = [store.path, `${store.path}-wal`, `${store.path}-shm`, join(dataDir, KEY_FILE_NAME)];
      for (const f of files)
        expect({ f, exists: existsSync(f), mode: mode(f) }).toEqual({ f, exists: true, mode: 0o600 });
      store.close();
    } finally {
      process.umask(old);
    }
  });

  for (const [what, suffix] of [
    ['the db file', ''],
    ['a leftover WAL file', '-wal'],
    ['a leftover SHM file', '-shm'],
  ] as const) {
    for (const loose of [0o644, 0o640, 0o604]) {
      it(`refuses ${what} with mode ${loose.toString(8)}, naming it and the fix`, () => {
        const dataDir = freshDir();
        const db = join(dataDir, DB_FILE_NAME);
        openSqliteDatabase({ dataDir }).close();
        const target = `${db}${suffix}`;
        if (!existsSync(target)) writeFileSync(target, '', { mode: 0o600 });
        chmodSync(target, loose);
        let error: unknown;
        try {
          openSqliteDatabase({ dataDir }).close();
        } catch (err) {
          error = err;
        }
        expect(error).toBeInstanceOf(GrantkeeperError);
        expect(error).toHaveProperty('code', 'store_unusable');
        expect((error as Error).message).toContain(
          `${target} is readable by other users (mode ${loose.toString(8)})`,
        );
        expect((error as Error).message).toContain(`chmod 600 ${target}`);
      });
    }
  }

  for (const loose of [0o644, 0o640, 0o604, 0o660]) {
    it(`refuses a key file with mode ${loose.toString(8)} without printing the key`, async () => {
      const dataDir = freshDir();
      const key = randomBytes(32).toString('base64');
      const path = join(dataDir, KEY_FILE_NAME);
      writeFileSync(path, `${key}\n`, { mode: 0o600 });
      chmodSync(path, loose);
      const error = await loadKeyring({ dataDir, logger: silent }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GrantkeeperError);
      expect(error).toHaveProperty('code', 'sealing_key_unusable');
      expect((error as Error).message).toMatch(/gives other users access to it: run `chmod 600 /);
      expect((error as Error).message).not.toContain(key);
      chmodSync(path, 0o600);
      await expect(loadKeyring({ dataDir, logger: silent })).resolves.toBeDefined();
    });
  }
});
