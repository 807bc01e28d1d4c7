import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import * as schema from '../../../db/sqlite/schema.js';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { packageRoot } from '../../util/package-root.js';
import { sqliteFailureOf } from './sqlite-errors.js';

export type Db = BetterSQLite3Database<typeof schema>;

/** An opened SQLite file: drizzle over it, the raw handle for what drizzle does not do, its path. */
export interface SqliteDatabase {
  db: Db;
  sqlite: Database.Database;
  path: string;
  close(): void;
}

export const DB_FILE_NAME = 'grantkeeper.db';

/** A `meta` key set once migrate-store has copied this store to PostgreSQL: where it went, and when. */
export const MOVED_TO_KEY = 'moved_to';

export interface OpenStoreOptions {
  dataDir: string;
  busyTimeoutMs?: number;
  /** Apply pending migrations (the service does; read-only tools may not). */
  migrate?: boolean;
}

/** Creates the data folder owner-only; an existing folder is left as the operator made it. */
export function ensureDataDir(dataDir: string): string {
  const dir = resolve(dataDir);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new GrantkeeperError(
      'store_unusable',
      `cannot create the data folder ${dir}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return dir;
}

/** SQLite's page cache per connection, in KiB (about SQLite's own default of 2,000). */
const PAGE_CACHE_KIB = 2048;

/**
 * Opens the SQLite store with the pragmas the refresh engine relies on: WAL so readers never
 * block the worker, and a busy timeout so a short lock by another process is waited out.
 */
export function openSqliteDatabase(options: OpenStoreOptions): SqliteDatabase {
  const dir = ensureDataDir(options.dataDir);
  const path = join(dir, DB_FILE_NAME);
  createOwnerOnly(path);
  let sqlite: Database.Database;
  try {
    sqlite = new Database(path, { timeout: options.busyTimeoutMs ?? 5000 });
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    // better-sqlite3 builds with a 16 MB page cache; the kernel caches the file anyway, and a
    // catch-up over 100,000 grants held most of that cache as resident memory on top of the heap.
    sqlite.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  } catch (err) {
    throw describeSqliteError(err, path);
  }
  const db = drizzle(sqlite, { schema });
  if (options.migrate ?? true) {
    try {
      migrate(db, { migrationsFolder: join(packageRoot(), 'db', 'sqlite', 'migrations') });
    } catch (err) {
      sqlite.close();
      throw describeSqliteError(err, path);
    }
  }
  return { db, sqlite, path, close: () => sqlite.close() };
}

/**
 * SQLite creates the WAL and SHM files with the db file's mode, so 0600 here covers all three; WAL
 * and SHM files left over with looser modes (a copy, a restore) hold recent tokens too and are refused.
 */
function createOwnerOnly(path: string): void {
  try {
    closeSync(openSync(path, 'a', 0o600));
  } catch (err) {
    throw describeSqliteError(err, path);
  }
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch {
      continue; // no WAL or SHM yet
    }
    if (mode & 0o077) {
      throw new GrantkeeperError(
        'store_unusable',
        `the database file ${file} is readable by other users (mode ${mode.toString(8)}): run \`chmod 600 ${file}\``,
      );
    }
  }
}

/** Turns SQLite and file-system failures into one line that says what to fix. */
export function describeSqliteError(err: unknown, path: string): Error {
  if (err instanceof GrantkeeperError) return err;
  const code = (err as { code?: string }).code ?? '';
  const message = (err as Error).message ?? String(err);
  const failure = sqliteFailureOf(err);
  if (failure === 'locked') {
    return new GrantkeeperError(
      'store_unusable',
      `the database ${path} is locked by another process; stop it or retry`,
      {
        cause: err,
      },
    );
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new GrantkeeperError(
      'store_unusable',
      `the database ${path} is not writable (${message}): check its permissions and disk`,
      {
        cause: err,
      },
    );
  }
  if (failure === 'disk_full') {
    return new GrantkeeperError(
      'store_unusable',
      `the disk holding ${path} is full: free space and restart`,
      { cause: err },
    );
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new GrantkeeperError(
      'store_unusable',
      `${path} is not a grantkeeper database or is damaged (${message}): restore it from a backup`,
      {
        cause: err,
      },
    );
  }
  return new GrantkeeperError('store_unusable', `cannot open the database ${path}: ${message}`, {
    cause: err,
  });
}
