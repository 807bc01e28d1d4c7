import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { managedRedisUrl } from './managed-redis.js';
import { type ClaimRecord, ownerState, readCurrentClaim } from './managed-redis-claim.js';
import type { RedisEndpoint } from './redis-endpoint.js';

/**
 * Where the managed redis-server keeps its AOF, its password and who owns it: `<data>/redis`,
 * readable by the owning user alone. CLI commands and the library find the running service's Redis
 * here (port from the current claim, password from its file).
 */
export function managedRedisFolder(dataDir: string): string {
  return join(dataDir, 'redis');
}

const PASSWORD_FILE = 'password';
const PASSWORD = /^[0-9a-f]{64}$/;

/**
 * Creates the folder, or tightens one that is readable by others, and answers its resolved path
 * (what redis-server's working folder reads as in /proc).
 */
export function prepareManagedRedisFolder(dataDir: string): string {
  const folder = managedRedisFolder(dataDir);
  try {
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    if ((statSync(folder).mode & 0o077) !== 0) chmodSync(folder, 0o700);
    return realpathSync(folder);
  } catch (err) {
    throw new GrantkeeperError(
      'redis_unavailable',
      `cannot prepare the Redis folder ${folder}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * The folder's Redis password: 32 random bytes, hex, made once and kept (0600), so a restarted or
 * taken-over redis-server accepts the clients that were connected to the one before.
 */
export function ensureManagedRedisPassword(folder: string): string {
  const path = join(folder, PASSWORD_FILE);
  const existing = readPassword(path);
  if (existing !== undefined) {
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
    return existing;
  }
  const password = randomBytes(32).toString('hex');
  // Written whole under another name and renamed in: a reader never sees half a password.
  const tmp = join(folder, `.password-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  writeFileSync(tmp, `${password}\n`, { mode: 0o600 });
  renameSync(tmp, path);
  return password;
}

function readPassword(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8').trim();
    return PASSWORD.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

export interface ManagedRedisEndpoint {
  /** With the password: never log it (describeRedisUrl). */
  url: string;
  port: number;
  ownerPid: number;
  /** False when the service that started it died without stopping it (its redis-server may live on). */
  ownerAlive: boolean;
}

/** The running service's managed Redis, or undefined when none was started or it was stopped. */
export function managedRedisEndpoint(dataDir: string): ManagedRedisEndpoint | undefined {
  const folder = managedRedisFolder(dataDir);
  let record: ClaimRecord | undefined;
  try {
    record = readCurrentClaim(folder)?.record;
  } catch {
    // No folder (never started) or not ours to read.
    return undefined;
  }
  if (!record || record.port === null || record.redisPid === null) return undefined;
  const state = ownerState(record);
  if (state === 'stopped') return undefined;
  const password = readPassword(join(folder, PASSWORD_FILE));
  if (password === undefined) return undefined;
  return {
    url: managedRedisUrl(record.port, password),
    port: record.port,
    ownerPid: record.ownerPid,
    ownerAlive: state !== 'gone',
  };
}

/** The configured Redis when set, else the running service's managed Redis, else undefined (not running). */
export function redisForTools(
  configured: RedisEndpoint | undefined,
  dataDir: string,
): RedisEndpoint | undefined {
  if (configured) return configured;
  const managed = managedRedisEndpoint(dataDir);
  return managed && { kind: 'url', url: managed.url };
}
