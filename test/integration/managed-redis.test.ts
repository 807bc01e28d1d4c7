import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import { startManagedRedis } from '../../src/redis/managed-redis.js';
import { CleanupStack } from '../../src/util/cleanup-stack.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

const cleanups = new CleanupStack();
afterEach(() => cleanups.run());

function client(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  cleanups.add(async () => {
    redis.disconnect();
  });
  return redis;
}

async function privateRedis(opts?: { persistence?: boolean }): Promise<PrivateRedis> {
  const redis = await startPrivateRedis(opts);
  cleanups.add(() => redis.stop());
  return redis;
}

/** Alive and not a zombie (an orphan is reaped by whatever init the machine runs, maybe late). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

describe('startManagedRedis', () => {
  it('starts a loopback redis-server that answers PING, configured for BullMQ', async () => {
    const redis = await startManagedRedis();
    cleanups.add(() => redis.stop());
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(redis.port).not.toBe(6379);

    const c = client(redis.url);
    expect(await c.ping()).toBe('PONG');
    expect(await c.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(await c.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
    expect(await c.config('GET', 'protected-mode')).toEqual(['protected-mode', 'yes']);
    expect(await c.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
    expect(await c.config('GET', 'save')).toEqual(['save', '']);
  });

  it('with a password: refuses clients without it, and the password is on no command line', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'gk-redis-auth-'));
    cleanups.add(() => rm(parent, { recursive: true, force: true }));
    // A folder name redis.conf must quote: spaces, a quote and a backslash.
    const dataDir = join(parent, 'da"ta \\ dir');
    const password = randomBytes(32).toString('hex');
    const redis = await startManagedRedis({ dataDir, password });
    cleanups.add(() => redis.stop());
    expect(redis.url).toBe(`redis://:${password}@127.0.0.1:${redis.port}`);

    const anonymous = client(`redis://127.0.0.1:${redis.port}`);
    anonymous.on('error', () => {});
    await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/);
    const wrong = client(`redis://:not-the-password@127.0.0.1:${redis.port}`);
    wrong.on('error', () => {});
    await expect(wrong.ping()).rejects.toThrow(/WRONGPASS|invalid/);

    const owner = client(redis.url);
    expect(await owner.ping()).toBe('PONG');
    expect(await owner.config('GET', 'dir')).toEqual(['dir', dataDir]);
    expect(await owner.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(password);
    expect(readFileSync(`/proc/${redis.pid}/cmdline`, 'utf8')).not.toContain(password);
    expect(readFileSync(`/proc/${redis.pid}/environ`, 'utf8')).not.toContain(password);
  });

  it('keeps a key across a restart through its AOF, and loses it when the data is wiped', async () => {
    const redis = await privateRedis();
    const c = client(redis.url);
    expect(await c.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await c.config('GET', 'appendfsync')).toEqual(['appendfsync', 'everysec']);
    await c.set('gk:survivor', 'still here');
    c.disconnect();

    await redis.restart({ keepData: true });
    const after = client(redis.url);
    expect(await after.get('gk:survivor')).toBe('still here');
    after.disconnect();

    await redis.restart();
    const wiped = client(redis.url);
    expect(await wiped.get('gk:survivor')).toBeNull();
  });

  it('reports a missing binary as one operator-facing line', async () => {
    const err = await startManagedRedis({ binary: 'redis-server-missing-for-test' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GrantkeeperError);
    expect(err).toHaveProperty('code', 'redis_unavailable');
    const message = (err as GrantkeeperError).message;
    expect(message).not.toContain('\n');
    expect(message).toContain('redis-server-missing-for-test not found on PATH');
    expect(message).toContain('sudo apt-get install redis-server');
    expect(message).toContain('brew install redis');
    expect(message).toContain('REDIS_URL');
  });

  it('reports an early exit (port taken) with redis-server’s last log lines', async () => {
    const blocker = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.add(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const address = blocker.address();
    const port = typeof address === 'object' && address ? address.port : 0;

    const err = await startManagedRedis({ port }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GrantkeeperError);
    expect(err).toHaveProperty('code', 'redis_unavailable');
    expect((err as GrantkeeperError).message).toMatch(/exited before it was ready .*Address already in use/);
  });

  it('reports a data folder that cannot be created', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'gk-redis-bad-'));
    await writeFile(join(parent, 'file'), '');
    try {
      const err = await startManagedRedis({ dataDir: join(parent, 'file', 'redis') }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(GrantkeeperError);
      expect(err).toHaveProperty('code', 'redis_unavailable');
      expect((err as GrantkeeperError).message).toMatch(/cannot create the Redis folder .*ENOTDIR/);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('stop() and kill() leave no process behind', async () => {
    const stopped = await startManagedRedis();
    expect(isRunning(stopped.pid)).toBe(true);
    await stopped.stop();
    expect(await stopped.exited).toBe(0);
    expect(isRunning(stopped.pid)).toBe(false);
    await stopped.stop();

    const killed = await startManagedRedis();
    killed.kill();
    expect(await killed.exited).toBeNull();
    expect(isRunning(killed.pid)).toBe(false);
  });

  it('stops redis-server when the parent process exits normally', async () => {
    const modulePath = fileURLToPath(new URL('../../src/redis/managed-redis.ts', import.meta.url));
    const script = `
      const { startManagedRedis } = await import(${JSON.stringify(modulePath)});
      const redis = await startManagedRedis();
      console.log(redis.pid);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(0);
    const pid = Number(output.trim());
    expect(pid).toBeGreaterThan(0);
    // SIGTERM from the exit hook: redis shuts down on its own within moments.
    await expect.poll(() => isRunning(pid), { timeout: 5_000 }).toBe(false);
  });
});
