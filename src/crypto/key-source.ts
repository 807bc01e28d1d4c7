import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import { Keyring, keyIdFor, type SealingKey } from './sealer.js';

export const KEY_FILE_NAME = 'grantkeeper.key';
const KEY_BYTES = 32;
const execFileAsync = promisify(execFile);
const HOW_TO_MAKE = 'make one with `openssl rand -base64 32`';

export function keyFilePath(dataDir: string): string {
  return join(dataDir, KEY_FILE_NAME);
}

export interface LoadKeyringOptions {
  /** GRANTKEEPER_KEY; empty counts as unset. */
  envKey?: string;
  /** Comma-separated base64 keys that still open values sealed before a rotation. */
  previousKeys?: string;
  dataDir: string;
  logger: Logger;
  /** GRANTKEEPER_KEY_FILE: a key file the operator provides (never generated). */
  keyFile?: string;
  /** GRANTKEEPER_KEY_COMMAND: run with /bin/sh; its output is the key. */
  keyCommand?: string;
  /** False for tools that only read an existing store: a missing key file is then an error. */
  generate?: boolean;
  /**
   * The store is shared by several machines (PostgreSQL): a key generated into one machine's data
   * folder would seal values no other replica opens, so the key must be given.
   */
  shared?: boolean;
}

export async function loadKeyring(opts: LoadKeyringOptions): Promise<Keyring> {
  const previous = (opts.previousKeys ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s, i) => sealingKey(s, `Previous key ${i + 1}`));
  return new Keyring(await primaryKey(opts), previous);
}

async function primaryKey(opts: LoadKeyringOptions): Promise<SealingKey> {
  const envKey = opts.envKey?.trim();
  if (envKey) return sealingKey(envKey, 'GRANTKEEPER_KEY');
  if (opts.keyFile) {
    const key = await readKeyFile(opts.keyFile);
    if (!key)
      throw new GrantkeeperError(
        'sealing_key_unusable',
        `GRANTKEEPER_KEY_FILE names ${opts.keyFile}, which does not exist`,
      );
    return key;
  }
  if (opts.keyCommand) return keyFromCommand(opts.keyCommand);
  if (opts.shared) {
    throw new GrantkeeperError(
      'sealing_key_unusable',
      `a PostgreSQL store is shared by every replica, so its sealing key must be given, not generated on one machine: set GRANTKEEPER_KEY, GRANTKEEPER_KEY_FILE or GRANTKEEPER_KEY_COMMAND (${HOW_TO_MAKE})`,
    );
  }
  return keyFromFile(keyFilePath(opts.dataDir), opts.logger, opts.generate ?? true);
}

const KEY_COMMAND_TIMEOUT_MS = 30_000;
const KEY_COMMAND_MAX_BYTES = 64 * 1024;

/** Runs the operator's key command; its failure is reported by exit status, never by its output. */
async function keyFromCommand(command: string): Promise<SealingKey> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('/bin/sh', ['-c', command], {
      timeout: KEY_COMMAND_TIMEOUT_MS,
      maxBuffer: KEY_COMMAND_MAX_BYTES,
      encoding: 'utf8',
    }));
  } catch (err) {
    const { code, killed, signal } = err as { code?: unknown; killed?: boolean; signal?: string | null };
    // Node kills a command that prints too much as well: that is not a timeout.
    const why =
      code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER'
        ? `printed more than ${KEY_COMMAND_MAX_BYTES / 1024} KiB, which no key is`
        : killed
          ? `did not finish within ${KEY_COMMAND_TIMEOUT_MS / 1000} s`
          : typeof code === 'number'
            ? `exited with status ${code}`
            : signal
              ? `was killed by ${signal}`
              : `could not be run (${String(code ?? 'error')})`;
    throw new GrantkeeperError(
      'sealing_key_unusable',
      `GRANTKEEPER_KEY_COMMAND ${why}; run it by hand to see why`,
    );
  }
  return sealingKey(stdout.trim(), 'The output of GRANTKEEPER_KEY_COMMAND');
}
function sealingKey(text: string, what: string): SealingKey {
  const key = decodeBase64(text);
  if (key?.length !== KEY_BYTES) {
    // Only the decoded length is reported: the value itself is the secret.
    const got = key ? `it decoded to ${key.length} bytes` : 'it is not valid base64';
    throw new GrantkeeperError(
      'sealing_key_unusable',
      `${what} must be ${KEY_BYTES} random bytes in base64 (${HOW_TO_MAKE}); ${got}`,
    );
  }
  return { id: keyIdFor(key), key };
}

/** Strict base64, standard or url-safe alphabet, padding optional; undefined when not canonical. */
function decodeBase64(text: string): Buffer | undefined {
  if (!/^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/.test(text)) return undefined;
  const standard = text.replace(/-/g, '+').replace(/_/g, '/');
  const bytes = Buffer.from(standard, 'base64');
  // Buffer.from silently drops stray bits and bad padding; a round trip catches both.
  const canonical = bytes.toString('base64');
  const matches = standard.includes('=') ? canonical === standard : canonical.replace(/=+$/, '') === standard;
  return matches ? bytes : undefined;
}

async function keyFromFile(path: string, logger: Logger, generate: boolean): Promise<SealingKey> {
  const existing = await readKeyFile(path);
  if (existing) return existing;
  if (!generate) {
    throw new GrantkeeperError(
      'sealing_key_unusable',
      `no sealing key: GRANTKEEPER_KEY is not set and there is no key file at ${path}; set the key the store was sealed with`,
    );
  }
  const key = randomBytes(KEY_BYTES);
  // Another process created it between our check and our write: read theirs.
  if (!(await publishKeyFile(path, key))) return keyFromFile(path, logger, generate);
  const id = keyIdFor(key);
  logger.warn(
    { path, keyId: id },
    `Generated a new sealing key ${id} at ${path}: back it up, without it no stored grant can be opened`,
  );
  return { id, key };
}

async function readKeyFile(path: string): Promise<SealingKey | undefined> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (mode & 0o077) {
    const octal = (mode & 0o777).toString(8).padStart(3, '0');
    throw new GrantkeeperError(
      'sealing_key_unusable',
      `Key file ${path} has mode ${octal}, which gives other users access to it: run \`chmod 600 ${path}\``,
    );
  }
  return sealingKey((await readFile(path, 'utf8')).trim(), `Key file ${path}`);
}

/**
 * Writes the key to a private temp file, syncs it, then hard-links it into place: link() fails if
 * the name exists, so creation is exclusive, and no reader can ever see a half-written key file.
 * Returns false when another process won the race.
 */
async function publishKeyFile(path: string, key: Buffer): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const file = await open(tmp, 'wx', 0o600);
  try {
    await file.writeFile(`${key.toString('base64')}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp);
  }
  // The key seals every grant stored after this, so its directory entry must survive a crash too.
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return true;
}
