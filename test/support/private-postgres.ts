import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { findFreePort } from '../../src/redis/managed-redis.js';

export interface PrivatePostgres {
  port: number;
  /** The cluster's folder (data, socket, log); removed by stop(). */
  dir: string;
  /** A URL for a new, empty database of this cluster. */
  createDatabase(name?: string): Promise<string>;
  /** Runs SQL as the superuser on `database` (default `postgres`). */
  query(sql: string, database?: string): Promise<pg.QueryResult>;
  /** A fast shutdown (clients are told, like a planned restart), then the folder is removed. */
  stop(): Promise<void>;
  /** Stops the server, as for maintenance; start() brings it back on the same port with its data. */
  halt(mode?: 'fast' | 'immediate'): void;
  start(): void;
}

const PG_ROOTS = ['/usr/lib/postgresql'];

/** The PostgreSQL server binaries, newest first; undefined when the machine has none. */
export function postgresBinDir(): string | undefined {
  for (const root of PG_ROOTS) {
    if (!existsSync(root)) continue;
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(root, versions[0], 'bin');
  }
  return undefined;
}

/** Why tests needing PostgreSQL must skip, or undefined when they can run. */
export function postgresUnavailable(): string | undefined {
  if (!postgresBinDir()) {
    return 'PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)';
  }
  if (process.getuid?.() === 0 && !userExists('postgres')) {
    return 'running as root and there is no postgres user to run the server as';
  }
  return undefined;
}

function userExists(name: string): boolean {
  try {
    execFileSync('id', ['-u', name], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

const started = new Set<{ halt(mode: 'immediate'): void }>();
// A test process that dies without its afterAll must not leave servers behind.
process.once('exit', () => {
  for (const cluster of started) cluster.halt('immediate');
});

/**
 * A PostgreSQL cluster of the test's own: initdb into a temp folder, pg_ctl on a free loopback port
 * with its socket in that folder. Never the machine's own 5432 cluster. As root, the server runs as
 * the `postgres` user (PostgreSQL refuses to run as root). Durability is off by default: tests, not
 * data. `durable: true` (the bench) keeps fsync and full-page writes on but does not fsync each
 * commit (synchronous_commit=off), as the SQLite store's WAL with synchronous=NORMAL does not.
 */
export async function startPrivatePostgres(opts: { durable?: boolean } = {}): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  const unavailable = postgresUnavailable();
  if (!bin || unavailable) throw new Error(unavailable);
  const dir = mkdtempSync(join(tmpdir(), 'grantkeeper-pg-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), 0);
  const run = (tool: string, args: string[]) => {
    const [cmd, argv] = asRoot
      ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]]
      : [join(bin, tool), args];
    return execFileSync(cmd as string, argv as string[], { stdio: 'pipe', cwd: dir, timeout: 60_000 });
  };
  const data = join(dir, 'data');
  run('initdb', [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
    '--no-sync',
    '--no-instructions',
  ]);
  const port = await findFreePort('127.0.0.1');
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    '-c listen_addresses=127.0.0.1',
    ...(opts.durable
      ? ['-c fsync=on', '-c synchronous_commit=off', '-c full_page_writes=on']
      : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
    '-c max_connections=200',
  ].join(' ');
  const cluster = {
    halt(mode: 'fast' | 'immediate' = 'fast') {
      try {
        run('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop']);
      } catch {
        // already stopped
      }
    },
    start() {
      run('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-o', options, '-w', 'start']);
    },
  };
  cluster.start();
  started.add(cluster);
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  let serial = 0;
  const query = async (sql: string, database = 'postgres') => {
    const client = new pg.Client({ connectionString: url(database) });
    await client.connect();
    try {
      return await client.query(sql);
    } finally {
      await client.end();
    }
  };
  return {
    port,
    dir,
    query,
    async createDatabase(name = `gk_${process.pid}_${++serial}`) {
      await query(`create database ${name}`);
      return url(name);
    },
    halt: (mode) => cluster.halt(mode),
    start: () => cluster.start(),
    async stop() {
      cluster.halt('fast');
      started.delete(cluster);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
