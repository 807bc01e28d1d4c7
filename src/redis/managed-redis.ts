import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import { reapOnExit } from '../util/reap-on-exit.js';
import { TIMED_OUT, withTimeout } from '../util/with-timeout.js';

export interface ManagedRedisOptions {
  /** When set: redis works in this folder with AOF persistence (appendfsync everysec). */
  dataDir?: string;
  /** Defaults to true when dataDir is given; false turns off both RDB snapshots and AOF. */
  persistence?: boolean;
  /** Defaults to a free port. */
  port?: number;
  /**
   * Clients must AUTH with it. It reaches redis-server through its configuration on stdin, never
   * its command line (which every local user can read in ps).
   */
  password?: string;
  /** Defaults to 'redis-server' on PATH. */
  binary?: string;
  logger?: Logger;
  startTimeoutMs?: number;
}

export interface ManagedRedis {
  /** redis://127.0.0.1:PORT, with the password when there is one: never log it (describeRedisUrl). */
  url: string;
  port: number;
  pid: number;
  /** SIGTERM (redis flushes its AOF), wait for the exit, SIGKILL after a grace period. */
  stop(): Promise<void>;
  /** SIGKILL now, for fault tests. */
  kill(): void;
  /** Resolves with the exit code (null when ended by a signal) once the child is reaped. */
  exited: Promise<number | null>;
}

const HOST = '127.0.0.1';
const DEFAULT_START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 10_000;
const LOG_LINES_KEPT = 50;
const PORT_ATTEMPTS = 3;

const INSTALL_HINT =
  'install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) ' +
  'or set REDIS_URL to use an existing Redis';

/** redis://127.0.0.1:PORT, with the password as the URL's credential when there is one. */
export function managedRedisUrl(port: number, password?: string): string {
  const credential = password === undefined ? '' : `:${encodeURIComponent(password)}@`;
  return `redis://${credential}${HOST}:${port}`;
}

export function findFreePort(host = HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

export async function startManagedRedis(opts: ManagedRedisOptions = {}): Promise<ManagedRedis> {
  if (opts.port !== undefined) return startOnce(opts, opts.port);
  // A port found free can be taken by someone else before redis binds it; pick another then.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts, await findFreePort());
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

/** redis-server could not bind the port it was given. */
export class PortTakenError extends GrantkeeperError<'redis_unavailable'> {
  constructor(message: string) {
    super('redis_unavailable', message);
  }
}

/** The configuration redis-server reads from stdin (`redis-server -`): one directive per line. */
function redisConfig(opts: ManagedRedisOptions, port: number): string {
  const persistence = opts.persistence ?? opts.dataDir !== undefined;
  if (persistence && opts.dataDir === undefined) {
    throw new Error('startManagedRedis: persistence needs a dataDir');
  }
  const lines = [
    `port ${port}`,
    `bind ${HOST}`,
    'protected-mode yes',
    // BullMQ refuses to run when Redis may evict its keys.
    'maxmemory-policy noeviction',
    // A refresh job's opts ({jobId, delay, attempts}) run a little past the default 64 bytes; under
    // 128 Redis keeps each job hash as a compact listpack, about half the memory of a hashtable.
    'hash-max-listpack-value 128',
    'daemonize no',
    'logfile ""',
  ];
  if (opts.dataDir !== undefined) {
    // Owner-only like the rest of the data folder: the AOF shows which grants exist.
    try {
      mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new GrantkeeperError(
        'redis_unavailable',
        `cannot create the Redis folder ${opts.dataDir}: ${(err as Error).message}`,
      );
    }
    lines.push(`dir ${quoteConfigValue(opts.dataDir)}`);
  }
  // No RDB snapshots: the AOF is the persistence, and a shutdown whose snapshot fails (a full disk,
  // a folder removed) would leave redis-server ignoring SIGTERM.
  lines.push('save ""');
  lines.push(persistence ? 'appendonly yes' : 'appendonly no');
  if (persistence) lines.push('appendfsync everysec');
  if (opts.password !== undefined) lines.push(`requirepass ${quoteConfigValue(opts.password)}`);
  return `${lines.join('\n')}\n`;
}

/** A double-quoted redis.conf string: backslash, quote and anything unprintable as escapes. */
function quoteConfigValue(value: string): string {
  const escaped = Buffer.from(value, 'utf8').reduce((out, byte) => {
    if (byte === 0x22 || byte === 0x5c) return `${out}\\${String.fromCharCode(byte)}`;
    if (byte < 0x20 || byte > 0x7e) return `${out}\\x${byte.toString(16).padStart(2, '0')}`;
    return out + String.fromCharCode(byte);
  }, '');
  return `"${escaped}"`;
}

async function startOnce(opts: ManagedRedisOptions, port: number): Promise<ManagedRedis> {
  const binary = opts.binary ?? 'redis-server';
  const config = redisConfig(opts, port);
  const logger = opts.logger?.child({ component: 'redis-server', port });
  const recent: string[] = [];

  const child = spawn(binary, ['-'], { stdio: ['pipe', 'pipe', 'pipe'] });
  // A redis-server that fails to start may close its stdin before reading it all.
  child.stdin?.on('error', () => {});
  child.stdin?.end(config);
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new GrantkeeperError('redis_unavailable', `${binary} not found on PATH: ${INSTALL_HINT}`, {
        cause: err,
      });
    }
    throw new GrantkeeperError('redis_unavailable', `could not start ${binary}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  // SIGTERM from the exit hook still lets redis flush its AOF on the way out.
  const exited = reapOnExit(child, 'SIGTERM');
  const closed = new Promise((resolve) => child.once('close', resolve));

  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on('line', (line) => {
      if (!line.trim()) return;
      recent.push(stripLogPrefix(line));
      if (recent.length > LOG_LINES_KEPT) recent.shift();
      logger?.debug(line);
    });
  }

  const lastLines = () => recent.slice(-2).join('; ') || '(no output)';
  const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const outcome = await Promise.race([
    waitForPing(port, opts.password, timeoutMs, exited).then((ready) => (ready ? 'ready' : 'timeout')),
    exited.then(() => 'exited' as const),
  ]);

  if (outcome !== 'ready') {
    child.kill('SIGKILL');
    const code = await exited;
    // 'exit' can come before the last lines are read; give the pipes a moment to drain.
    await withTimeout(closed, 500);
    if (outcome === 'timeout') {
      throw new GrantkeeperError(
        'redis_unavailable',
        `${binary} did not answer PING within ${timeoutMs} ms on port ${port}: ${lastLines()}`,
      );
    }
    const message = `${binary} exited before it was ready (exit code ${code}): ${lastLines()}`;
    throw recent.some((l) => l.includes('Address already in use'))
      ? new PortTakenError(message)
      : new GrantkeeperError('redis_unavailable', message);
  }

  logger?.debug('redis-server ready');
  // Once up, redis must not keep a finished parent alive (the exit hook stops it then). Until then the
  // child stays referenced so a failed start still reaches the caller's error handling.
  child.unref();
  for (const stream of [child.stdout, child.stderr]) {
    (stream as (Readable & Partial<Pick<Socket, 'unref'>>) | null)?.unref?.();
  }
  const pid = child.pid as number;

  return {
    url: managedRedisUrl(port, opts.password),
    port,
    pid,
    exited,
    kill() {
      child.kill('SIGKILL');
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      if ((await withTimeout(exited, STOP_GRACE_MS)) === TIMED_OUT) {
        logger?.warn('redis-server ignored SIGTERM; killing it');
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** "1234:M 01 Jan 2026 00:00:00.000 # message" → "message"; config errors come unprefixed. */
function stripLogPrefix(line: string): string {
  return line.replace(/^\d+:[A-Z] \d{2} \w{3} \d{4} [\d:.]+ [.\-*#] /, '');
}

/**
 * Polls with a raw RESP PING (after AUTH when there is a password) until +PONG, not -LOADING while
 * the AOF replays, or the deadline.
 */
async function waitForPing(
  port: number,
  password: string | undefined,
  timeoutMs: number,
  exited: Promise<unknown>,
): Promise<boolean> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const request = (password === undefined ? '' : respCommand('AUTH', password)) + respCommand('PING');
  const replies = password === undefined ? 1 : 2;
  const deadline = Date.now() + timeoutMs;
  while (!gone && Date.now() < deadline) {
    const timeout = Math.min(1_000, Math.max(1, deadline - Date.now()));
    if (await pingOnce(port, request, replies, timeout)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

function respCommand(...parts: string[]): string {
  return `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`;
}

/** True when the last of `replies` simple-string replies is +PONG. */
function pingOnce(port: number, request: string, replies: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: HOST, port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write(request));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      const lines = reply.split('\r\n');
      if (lines.length > replies) done(lines[replies - 1] === '+PONG');
    });
  });
}
