import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KEY_FILE_NAME, keyFilePath, loadKeyring } from '../../src/crypto/key-source.js';
import { keyIdFor } from '../../src/crypto/sealer.js';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import { createLogger } from '../../src/log/logger.js';

let dataDir: string;
let lines: string[];
const logger = () =>
  createLogger({ level: 'debug', destination: { write: (line: string) => lines.push(line) } });

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'grantkeeper-key-'));
  lines = [];
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

async function userError(promise: Promise<unknown>): Promise<GrantkeeperError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GrantkeeperError);
  expect(err).toHaveProperty('code', 'sealing_key_unusable');
  return err as GrantkeeperError;
}

describe('loadKeyring from GRANTKEEPER_KEY', () => {
  it('accepts standard and url-safe base64, padded or not', async () => {
    const key = Buffer.from('fb'.repeat(32), 'hex'); // encodes with + and / (or - and _)
    for (const envKey of [
      key.toString('base64'),
      key.toString('base64url'),
      key.toString('base64').replace(/=+$/, ''),
      ` ${key.toString('base64')}\n`,
    ]) {
      const ring = await loadKeyring({ envKey, dataDir, logger: logger() });
      expect(ring.primary.key.equals(key)).toBe(true);
      expect(ring.primary.id).toBe(keyIdFor(key));
    }
    expect(await readdir(dataDir)).toEqual([]);
  });

  it('rejects the wrong length, naming the length but never the value', async () => {
    for (const n of [16, 31, 33, 64]) {
      const envKey = randomBytes(n).toString('base64');
      const err = await userError(loadKeyring({ envKey, dataDir, logger: logger() }));
      expect(err.message).toBe(
        `GRANTKEEPER_KEY must be 32 random bytes in base64 (make one with \`openssl rand -base64 32\`); it decoded to ${n} bytes`,
      );
      expect(err.message).not.toContain(envKey);
    }
  });

  it('rejects text that is not strict base64', async () => {
    const good = randomBytes(32).toString('base64');
    for (const envKey of [
      `${good.slice(0, 20)}!${good.slice(21)}`,
      `${good}==`,
      `${good.slice(0, 42)}B=`,
      'a+b_'.repeat(11),
    ]) {
      const err = await userError(loadKeyring({ envKey, dataDir, logger: logger() }));
      expect(err.message).toMatch(
        /GRANTKEEPER_KEY must be 32 random bytes in base64 .*; it is not valid base64$/,
      );
      expect(err.message).not.toContain(envKey);
    }
  });

  it('loads previous keys for rotation', async () => {
    const [a, b, c] = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const ring = await loadKeyring({
      envKey: a.toString('base64'),
      previousKeys: `${b.toString('base64')}, ${c.toString('base64url')},`,
      dataDir,
      logger: logger(),
    });
    expect(ring.ids()).toEqual([a, b, c].map(keyIdFor));
    const err = await userError(
      loadKeyring({ envKey: a.toString('base64'), previousKeys: 'AAAA', dataDir, logger: logger() }),
    );
    expect(err.message).toMatch(/^Previous key 1 must be 32 random bytes .*it decoded to 3 bytes$/);
  });
});

describe('loadKeyring from the key file', () => {
  it('generates a 0600 key file, warns once with path and id, and reuses it', async () => {
    const path = keyFilePath(dataDir);
    expect(path).toBe(join(dataDir, KEY_FILE_NAME));
    const first = await loadKeyring({ dataDir, logger: logger() });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const stored = (await readFile(path, 'utf8')).trim();
    expect(Buffer.from(stored, 'base64').equals(first.primary.key)).toBe(true);
    expect(await readdir(dataDir)).toEqual([KEY_FILE_NAME]);

    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] ?? '');
    expect(entry.level).toBe(40);
    expect(entry.path).toBe(path);
    expect(entry.keyId).toBe(first.primary.id);
    expect(entry.msg).toContain(path);
    expect(entry.msg).toContain('back it up');
    for (const encoding of ['base64', 'base64url', 'hex'] as const) {
      expect(lines[0]).not.toContain(first.primary.key.toString(encoding).replace(/=+$/, ''));
    }

    const second = await loadKeyring({ dataDir, logger: logger() });
    expect(second.primary.id).toBe(first.primary.id);
    expect(second.primary.key.equals(first.primary.key)).toBe(true);
    expect(lines).toHaveLength(1);
  });

  it('treats an empty GRANTKEEPER_KEY as unset', async () => {
    const ring = await loadKeyring({ envKey: '', dataDir, logger: logger() });
    expect(ring.primary.id).toBe(keyIdFor(ring.primary.key));
    expect(await readdir(dataDir)).toEqual([KEY_FILE_NAME]);
  });

  it('agrees on one key when processes race to create it', async () => {
    const rings = await Promise.all(
      Array.from({ length: 8 }, () => loadKeyring({ dataDir, logger: logger() })),
    );
    expect(new Set(rings.map((r) => r.primary.id)).size).toBe(1);
    expect(lines).toHaveLength(1);
    expect(await readdir(dataDir)).toEqual([KEY_FILE_NAME]);
  });

  it('refuses a key file that group or others can access', async () => {
    const path = keyFilePath(dataDir);
    await writeFile(path, randomBytes(32).toString('base64'));
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      await chmod(path, mode);
      const err = await userError(loadKeyring({ dataDir, logger: logger() }));
      expect(err.message).toContain(`chmod 600 ${path}`);
      expect(err.message).toContain(mode.toString(8));
    }
    await chmod(path, 0o400);
    await expect(loadKeyring({ dataDir, logger: logger() })).resolves.toBeDefined();
  });

  it('rejects a key file with the wrong contents without echoing them', async () => {
    const path = keyFilePath(dataDir);
    const contents = randomBytes(24).toString('base64');
    await writeFile(path, contents, { mode: 0o600 });
    const err = await userError(loadKeyring({ dataDir, logger: logger() }));
    expect(err.message).toMatch(
      new RegExp(`^Key file ${path} must be 32 random bytes .*it decoded to 24 bytes$`),
    );
    expect(err.message).not.toContain(contents);
  });
});

describe('loadKeyring for a store shared by several machines', () => {
  const key = randomBytes(32);

  it('refuses to generate a key file, naming the three ways to give one', async () => {
    const err = await userError(loadKeyring({ dataDir, logger: logger(), shared: true }));
    expect(err.message).toMatch(/GRANTKEEPER_KEY, GRANTKEEPER_KEY_FILE or GRANTKEEPER_KEY_COMMAND/);
    expect(await readdir(dataDir)).toEqual([]);
  });

  it('reads GRANTKEEPER_KEY_FILE, refusing a missing file or one others can read', async () => {
    const path = join(dataDir, 'mounted-secret');
    await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600 });
    const ring = await loadKeyring({ dataDir, logger: logger(), shared: true, keyFile: path });
    expect(ring.primary.id).toBe(keyIdFor(key));
    await chmod(path, 0o644);
    expect((await userError(loadKeyring({ dataDir, logger: logger(), keyFile: path }))).message).toMatch(
      /mode 644/,
    );
    const missing = join(dataDir, 'nope');
    expect((await userError(loadKeyring({ dataDir, logger: logger(), keyFile: missing }))).message).toMatch(
      /GRANTKEEPER_KEY_FILE names .*nope, which does not exist/,
    );
  });

  it('runs GRANTKEEPER_KEY_COMMAND and takes what it prints; a failure says how, never what it wrote', async () => {
    const ring = await loadKeyring({
      dataDir,
      logger: logger(),
      shared: true,
      keyCommand: `printf '%s\\n' '${key.toString('base64')}'`,
    });
    expect(ring.primary.id).toBe(keyIdFor(key));
    const failed = await userError(
      loadKeyring({ dataDir, logger: logger(), keyCommand: 'echo secret-in-output; exit 7' }),
    );
    expect(failed.message).toMatch(/GRANTKEEPER_KEY_COMMAND exited with status 7/);
    expect(failed.message).not.toContain('secret-in-output');
    const garbage = await userError(loadKeyring({ dataDir, logger: logger(), keyCommand: 'echo not-a-key' }));
    expect(garbage.message).toMatch(/The output of GRANTKEEPER_KEY_COMMAND must be 32 random bytes/);
    expect(garbage.message).not.toContain('not-a-key');
    const flood = await userError(
      loadKeyring({ dataDir, logger: logger(), keyCommand: 'head -c 100000 /dev/zero | tr "\\0" x' }),
    );
    expect(flood.message).toMatch(/GRANTKEEPER_KEY_COMMAND printed more than 64 KiB/);
  });
});
