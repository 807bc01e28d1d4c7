import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { managedRedisEndpoint } from '../../src/redis/managed-redis-endpoint.js';
import { CleanupStack, type RunProcess, seedGrants, startRun, writeRunConfig } from '../faults/support.js';
import { type CliResult, runCli } from '../support/cli.js';
import { removeDir, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';

/**
 * `grantkeeper run` without REDIS_URL, as processes: the managed redis-server is reachable by its
 * owner alone, there is one per data folder, an orphan is taken over, and a dead one is restarted.
 */

const SECRET = 'managed-redis-owner-secret';

interface RedisProcess {
  pid: number;
  port: number;
}

/** The redis-servers working in `folder`, found the way an operator would: /proc, not our files. */
function redisServersIn(folder: string): RedisProcess[] {
  const found: RedisProcess[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const title = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const port = /^\S*redis-server \S+:(\d+)/.exec(title)?.[1];
      if (port && readlinkSync(`/proc/${name}/cwd`) === folder)
        found.push({ pid: Number(name), port: Number(port) });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found;
}

async function oneRedisServerIn(folder: string): Promise<RedisProcess> {
  let servers: RedisProcess[] = [];
  await waitFor(() => {
    servers = redisServersIn(folder);
    return servers.length === 1;
  }, `one redis-server in ${folder}`);
  return servers[0]!;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** A client that does not retry: one answer, or one error. */
function probe(url: string, cleanup: CleanupStack): Redis {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  cleanup.add(() => redis.disconnect());
  return redis;
}

function everyLineIsJson(text: string): void {
  for (const line of text.split('\n').filter((l) => l.trim() !== '')) {
    expect(() => JSON.parse(line), line).not.toThrow();
  }
}

/** A folder's files and their contents, to show that something left them alone. */
function snapshot(folder: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(folder, { withFileTypes: true })
      .filter((e) => e.isFile() && e.name !== 'dump.rdb')
      .map((e) => [
        e.name,
        `${statSync(join(folder, e.name)).mtimeMs} ${readFileSync(join(folder, e.name), 'utf8')}`,
      ]),
  );
}

/** Why a second OS user cannot be had here, or undefined when it can. */
function secondUserUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'creating a user needs root';
  for (const tool of ['useradd', 'userdel', 'runuser', 'redis-cli']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  return undefined;
}

interface Setup {
  cleanup: CleanupStack;
  endpoint: FaultEndpoint;
  dataDir: string;
  key: string;
  configPath: string;
  grantIds: string[];
  /** The resolved path redis-server works in. */
  redisFolder(): string;
  env(): Record<string, string>;
  cli(...args: string[]): Promise<CliResult>;
  run(opts?: { command?: 'run' | 'serve'; env?: Record<string, string> }): RunProcess;
}

/** One grant, due in an hour unless `dueNow`. */
async function setUp(opts: { dueNow?: boolean } = {}): Promise<Setup> {
  const cleanup = new CleanupStack();
  const endpoint = await startFaultEndpoint();
  cleanup.add(() => endpoint.close());
  const dataDir = tempDataDir();
  cleanup.add(() => removeDir(dataDir));
  // Runs end with kill -9 when a test is over, which leaves their redis-servers orphaned.
  cleanup.add(async () => {
    const folder = join(dataDir, 'redis');
    for (const { pid } of existsSync(folder) ? redisServersIn(realpathSync(folder)) : []) {
      process.kill(pid, 'SIGKILL');
    }
  });
  const key = testKey();
  const client = {
    endpoints: { authorization: endpoint.url.replace(/token$/, 'auth'), token: endpoint.url },
    clientId: 'gk',
    clientSecret: SECRET,
  };
  const configPath = writeRunConfig(dataDir, client);
  const { ids } = await seedGrants({
    dataDir,
    key,
    client,
    count: 1,
    mint: async () => ({ ...endpoint.mintGrant(), expiresIn: 3600 }),
    dueAt: () => Date.now() + (opts.dueNow ? 0 : 3600_000),
  });
  const env = () => ({ GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: key });
  return {
    cleanup,
    endpoint,
    dataDir,
    key,
    configPath,
    grantIds: ids,
    redisFolder: () => realpathSync(join(dataDir, 'redis')),
    env,
    cli: (...args) => runCli(args, env(), 60_000),
    run: (opts = {}) =>
      startRun({
        cleanup,
        configPath,
        dataDir,
        key,
        clientSecret: SECRET,
        ...(opts.command ? { command: opts.command } : {}),
        ...(opts.env ? { env: opts.env } : {}),
      }),
  };
}

const STARTED = 'grantkeeper API listening';
const LOST = 'lost the connection to Redis; waiting for it to come back';
const START_MS = 60_000;

describe('the managed redis-server of a running grantkeeper run', { timeout: 180_000 }, () => {
  let s: Setup;
  let owner: RunProcess;
  let server: RedisProcess;

  beforeAll(async () => {
    s = await setUp();
    owner = s.run();
    await owner.waitForLog(STARTED, START_MS);
    server = await oneRedisServerIn(s.redisFolder());
  }, START_MS * 2);

  afterAll(async () => {
    await s?.cleanup.run();
  });

  it('refuses clients without its password, which is in no process argument, log line or CLI output', async () => {
    const anonymous = probe(`redis://127.0.0.1:${server.port}`, s.cleanup);
    await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/);

    const folder = s.redisFolder();
    expect(statSync(folder).mode & 0o777).toBe(0o700);
    const password = readFileSync(join(folder, 'password'), 'utf8').trim();
    expect(password).toMatch(/^[0-9a-f]{64}$/);
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      if (statSync(path).isFile() && readFileSync(path, 'utf8').includes(password)) {
        expect({ name, mode: statSync(path).mode & 0o777 }).toEqual({ name, mode: 0o600 });
      }
    }
    const owned = probe(`redis://:${password}@127.0.0.1:${server.port}`, s.cleanup);
    expect(await owned.ping()).toBe('PONG');

    const status = await s.cli('status', '--json');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).redis).toMatchObject({
      state: 'connected',
      url: `redis://127.0.0.1:${server.port}`,
      managed_by: { pid: owner.pid, alive: true },
    });
    const token = await s.cli('token', s.grantIds[0]!);
    expect(token.code).toBe(0);

    expect(execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })).not.toContain(password);
    for (const text of [owner.cli.stdout(), owner.cli.stderr(), status.stdout, status.stderr, token.stderr]) {
      expect(text).not.toContain(password);
    }
  });

  const noSecondUser = secondUserUnavailable();
  if (noSecondUser) console.warn(`[managed-redis] the second-OS-user check is skipped: ${noSecondUser}`);

  it.skipIf(noSecondUser !== undefined)('another OS user can neither use it nor read its folder', () => {
    const user = `gkprobe${randomBytes(3).toString('hex')}`;
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', user], {
      stdio: 'pipe',
    });
    s.cleanup.add(() => execFileSync('userdel', [user], { stdio: 'pipe' }));
    const as = (...args: string[]) => spawnSync('runuser', ['-u', user, '--', ...args], { encoding: 'utf8' });

    const ping = as('redis-cli', '-h', '127.0.0.1', '-p', String(server.port), 'PING');
    expect(`${ping.stdout}${ping.stderr}`).toMatch(/NOAUTH/);
    const folder = s.redisFolder();
    const read = as('cat', join(folder, 'password'));
    expect(read.status).not.toBe(0);
    expect(read.stderr).toMatch(/Permission denied/);
    expect(as('ls', folder).status).not.toBe(0);
  });

  it('a second run on the folder refuses in one line and leaves the first one’s redis-server and files alone', async () => {
    const folder = s.redisFolder();
    const before = snapshot(folder);
    const second = s.run();
    const result = await second.cli.exited;
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      new RegExp(
        `^grantkeeper: the managed Redis of this data folder belongs to another grantkeeper run \\(pid ${owner.pid}\\).*REDIS_URL.*\\n$`,
      ),
    );
    expect(snapshot(folder)).toEqual(before);
    expect(redisServersIn(folder)).toEqual([server]);
    expect(owner.running()).toBe(true);

    // Commands from other processes still reach the running service's Redis.
    const [status, token, refresh] = await Promise.all([
      s.cli('status', '--json'),
      s.cli('token', s.grantIds[0]!),
      s.cli('refresh', s.grantIds[0]!, '--json'),
    ]);
    expect(JSON.parse(status.stdout).redis.state).toBe('connected');
    expect(token.code).toBe(0);
    expect(refresh.code).toBe(0);
    expect(JSON.parse(refresh.stdout)).toMatchObject({ refreshed: true });
    expect(snapshot(folder)).toEqual(before);
  });
});

describe('managed redis-server takeover and restarts', { timeout: 240_000 }, () => {
  let s: Setup | undefined;
  afterEach(async () => {
    await s?.cleanup.run();
    s = undefined;
  });

  it('of two runs started at the same moment, one owns the folder and the other refuses', async () => {
    s = await setUp();
    const runs = [s.run(), s.run()];
    const firstExit = await Promise.race(runs.map((r) => r.cli.exited.then(() => r)));
    const winner = runs.find((r) => r !== firstExit)!;
    const loser = await firstExit.cli.exited;
    expect(loser.code).toBe(1);
    expect(loser.stderr).toMatch(/belongs to another grantkeeper run/);
    await winner.waitForLog(STARTED, START_MS);
    const server = await oneRedisServerIn(s.redisFolder());
    expect(redisServersIn(s.redisFolder())).toEqual([server]);
    expect((await winner.terminate()).code).toBe(0);
    expect(isAlive(server.pid)).toBe(false);
  });

  it('run killed -9: the next run stops its orphaned redis-server and starts afresh on the same AOF', async () => {
    s = await setUp();
    const first = s.run();
    await first.waitForLog(STARTED, START_MS);
    const folder = s.redisFolder();
    const orphan = await oneRedisServerIn(folder);
    // Where CLI commands find the service's Redis.
    const url = managedRedisEndpoint(s.dataDir)!.url;
    const writer = probe(url, s.cleanup);
    await writer.set('gk:test:survivor', 'still here');
    // appendfsync everysec: give the AOF its second.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const queued = await writer.keys('grantkeeper:refresh:*');
    writer.disconnect();

    await first.kill9();
    expect(isAlive(orphan.pid)).toBe(true);
    // The orphan still answers: commands work, and status says who left it.
    const status = await s.cli('status', '--json');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).redis).toMatchObject({
      state: 'connected',
      managed_by: { pid: first.pid, alive: false },
    });

    const second = s.run();
    await second.waitForLog(STARTED, START_MS);
    expect(
      second
        .logs()
        .some(
          (l) =>
            l.msg === 'stopping the redis-server a previous grantkeeper left running on this data folder' &&
            l.redisPid === orphan.pid,
        ),
    ).toBe(true);
    expect(isAlive(orphan.pid)).toBe(false);
    const fresh = await oneRedisServerIn(folder);
    expect(fresh.pid).not.toBe(orphan.pid);
    // Same port: clients connected to the orphan reconnect by themselves.
    expect(fresh.port).toBe(orphan.port);
    const reader = probe(managedRedisEndpoint(s.dataDir)!.url, s.cleanup);
    expect(await reader.get('gk:test:survivor')).toBe('still here');
    expect(await reader.keys('grantkeeper:refresh:*')).toEqual(expect.arrayContaining(queued));
    reader.disconnect();

    // Both gone without a stop: the endpoint names a server that does not answer.
    await second.kill9();
    process.kill(fresh.pid, 'SIGKILL');
    await waitFor(() => !isAlive(fresh.pid), 'the redis-server to die');
    const unreachable = await s.cli('status', '--json');
    expect(unreachable.code).toBe(1);
    expect(JSON.parse(unreachable.stdout).redis).toMatchObject({ state: 'unreachable' });
  });

  it('the redis-server SIGKILLed under run is restarted, refreshes go on, and every line run writes is JSON', async () => {
    s = await setUp({ dueNow: true });
    // Short-lived access tokens: a refresh every second or so.
    s.endpoint.setDefault({ type: 'rotate', expiresIn: 2 });
    const run = s.run();
    await run.waitForLog(STARTED, START_MS);
    await waitFor(() => s!.endpoint.requests.length >= 2, 'refreshes before the crash', 30_000);
    const folder = s.redisFolder();
    const before = await oneRedisServerIn(folder);

    process.kill(before.pid, 'SIGKILL');
    await run.waitForLog('restarted the managed redis-server', 30_000);
    const after = await oneRedisServerIn(folder);
    expect(after.pid).not.toBe(before.pid);
    expect(after.port).toBe(before.port);
    const seen = s.endpoint.requests.length;
    await waitFor(() => s!.endpoint.requests.length >= seen + 3, 'refreshes after the restart', 60_000);
    expect(
      run
        .logs()
        .filter(
          (l) => l.msg === 'the managed redis-server exited unexpectedly; restarting it on the same port',
        ),
    ).toHaveLength(1);

    const { code } = await run.terminate();
    expect(code).toBe(0);
    expect(run.cli.stderr()).toBe('');
    everyLineIsJson(run.cli.stdout());
    expect(run.logs().filter((l) => l.msg === LOST).length).toBeLessThanOrEqual(1);
    expect(isAlive(after.pid)).toBe(false);
  });

  it('a redis-server that keeps dying ends run with exit code 1 and one line saying why', async () => {
    s = await setUp();
    const run = s.run();
    await run.waitForLog(STARTED, START_MS);
    const folder = s.redisFolder();
    const restarts = () => run.logs().filter((l) => l.msg === 'restarted the managed redis-server').length;
    // The limit is 3 restarts within a minute: the fourth death ends the service.
    for (let death = 1; death <= 4; death++) {
      await waitFor(() => restarts() === death - 1, `restart ${death - 1}`, 30_000);
      process.kill((await oneRedisServerIn(folder)).pid, 'SIGKILL');
    }
    const result = await run.cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    everyLineIsJson(result.stdout);
    const fatal = run
      .logs()
      .filter((l) => /could not be kept running: 4 exits or failed starts within 60 s/.test(String(l.msg)));
    expect(fatal).toHaveLength(1);
    expect(fatal[0]!.level).toBe(50);
    expect(run.logs().at(-1)?.msg).toBe('stopped');
    // One line per event, not one per reconnect attempt.
    expect(run.logs().filter((l) => l.msg === LOST).length).toBeLessThanOrEqual(4);
    expect(run.logs().filter((l) => l.level === 40).length).toBeLessThanOrEqual(4);
    expect(redisServersIn(folder)).toEqual([]);
  });

  it('serve uses the redis-server of run, starts none, and exits 1 once it is gone for good', async () => {
    s = await setUp();
    const run = s.run();
    await run.waitForLog(STARTED, START_MS);
    const folder = s.redisFolder();
    const server = await oneRedisServerIn(folder);
    const serve = s.run({ command: 'serve' });
    await serve.waitForLog(STARTED, START_MS);
    expect(serve.logs().some((l) => l.msg === 'using the managed redis-server of grantkeeper run')).toBe(
      true,
    );
    expect(redisServersIn(folder)).toEqual([server]);

    expect((await run.terminate()).code).toBe(0);
    // Gone for good: serve waits 30 s for it to come back, then gives up.
    const result = await serve.cli.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    everyLineIsJson(result.stdout);
    expect(
      serve
        .logs()
        .filter((l) =>
          /managed Redis at redis:\/\/127\.0\.0\.1:\d+ has been unreachable for \d+ s/.test(String(l.msg)),
        ),
    ).toHaveLength(1);
    expect(redisServersIn(folder)).toEqual([]);
  });
});
