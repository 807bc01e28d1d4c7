import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import * as schema from '../../../db/postgres/schema.js';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import type { Logger } from '../../log/logger.js';
import { packageRoot } from '../../util/package-root.js';
import { postgresFailureOf } from './postgres-errors.js';

export type PgDb = NodePgDatabase<typeof schema>;

/** An open PostgreSQL store: drizzle over a pool, the pool for the hot statements, where it is. */
export interface PostgresDatabase {
  db: PgDb;
  pool: pg.Pool;
  /** The URL without its password, for status and logs. */
  location: string;
  close(): Promise<void>;
}

export interface OpenPostgresOptions {
  url: string;
  /** Connections per process: each refresh in flight holds one for a statement at a time. */
  poolSize?: number;
  /** How long a statement may wait for a row lock before it is refused as `locked`. */
  lockTimeoutMs?: number;
  /**
   * Commands that register or run create grantkeeper's tables in an empty database; read-only
   * tools refuse one, so a mistyped URL is an error, not a new empty store.
   */
  create?: boolean;
  logger?: Logger;
}

const MIGRATIONS_FOLDER = () => join(packageRoot(), 'db', 'postgres', 'migrations');

/** A statement running longer than this is cancelled (and classified `locked`: ask again later). */
const STATEMENT_TIMEOUT_MS = 15_000;

/** One lock id for grantkeeper's migrations, so replicas starting together migrate once. */
const MIGRATION_LOCK_ID = 0x67_6b_6d_69; // "gkmi"

// int8 (epoch milliseconds, counts) as numbers: every value we store stays far below 2^53.
const INT8_OID = 20;
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'),
};

/** The URL for logs and status: user, host, port and database, never the password. */
export function redactedDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = '';
    parsed.search = '';
    return parsed.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/**
 * Opens a pool on the URL (TLS by its `sslmode`), proves the server answers and accepts our
 * writes, and applies migrations under an advisory lock. Every refusal is one line that says what
 * to fix, with nothing written.
 */
export async function openPostgresDatabase(options: OpenPostgresOptions): Promise<PostgresDatabase> {
  const location = redactedDatabaseUrl(options.url);
  const lockTimeoutMs = options.lockTimeoutMs ?? 5000;
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 20,
    application_name: 'grantkeeper',
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    lock_timeout: lockTimeoutMs,
    idle_in_transaction_session_timeout: 60_000,
    // A server that stops answering (a cut network) fails the query instead of hanging on it.
    query_timeout: STATEMENT_TIMEOUT_MS + 5000,
    types,
  });
  // An idle connection the server drops must not crash the process: the next query reconnects.
  pool.on('error', (err) =>
    options.logger?.warn({ cause: postgresFailureOf(err) ?? 'error' }, 'PostgreSQL connection lost'),
  );
  const db = drizzle({ client: pool, schema });
  const close = () => pool.end();
  try {
    const client = await pool.connect();
    try {
      // Every process writes (claims, key check, migrations): a read-only server is refused.
      await refuseReadOnly(client, location);
      await migrateOnce(client, location, options.create ?? true);
    } finally {
      client.release();
    }
  } catch (err) {
    await close().catch(() => {});
    throw describePostgresError(err, location);
  }
  return { db, pool, location, close };
}

async function refuseReadOnly(client: pg.PoolClient, location: string): Promise<void> {
  const { rows } = await client.query<{ recovery: boolean; readOnly: string }>(
    `select pg_is_in_recovery() as recovery, current_setting('transaction_read_only') as "readOnly"`,
  );
  const row = rows[0];
  if (row?.recovery || row?.readOnly === 'on') {
    throw new GrantkeeperError(
      'store_unusable',
      `PostgreSQL at ${location} accepts no writes (${row.recovery ? 'a standby in recovery' : 'read-only transactions'}): point GRANTKEEPER_DATABASE_URL at the primary`,
    );
  }
}

async function migrateOnce(client: pg.PoolClient, location: string, create: boolean): Promise<void> {
  await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
  try {
    const applied = await lastAppliedMigration(client);
    if (applied === null && !create) {
      throw new GrantkeeperError(
        'store_unusable',
        `no grantkeeper store in ${location}; check GRANTKEEPER_DATABASE_URL (grantkeeper client add or run creates one)`,
      );
    }
    refuseNewerSchema(applied, location);
    await migrate(drizzle({ client }), { migrationsFolder: MIGRATIONS_FOLDER() });
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]);
  }
}

/** When the newest migration applied to this database was written; null for an empty database. */
async function lastAppliedMigration(client: pg.PoolClient): Promise<number | null> {
  const table = await client.query<{ exists: boolean }>(
    `select to_regclass('drizzle.__drizzle_migrations') is not null as exists`,
  );
  if (!table.rows[0]?.exists) return null;
  const { rows } = await client.query<{ last: number | null }>(
    'select max(created_at) as last from drizzle.__drizzle_migrations',
  );
  const last = rows[0]?.last;
  return last === null || last === undefined ? null : Number(last);
}

/**
 * drizzle's migrator applies what is newer than the last applied migration and says nothing about
 * a database migrated by a newer grantkeeper, whose columns this one would not know: refuse it.
 */
function refuseNewerSchema(applied: number | null, location: string): void {
  const known = latestKnownMigration();
  if (applied !== null && applied > known) {
    throw new GrantkeeperError(
      'store_unusable',
      `the database at ${location} has a schema from a newer grantkeeper (migrated ${new Date(applied).toISOString()}, this version knows up to ${new Date(known).toISOString()}): upgrade this replica`,
    );
  }
}

function latestKnownMigration(): number {
  const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER(), 'meta', '_journal.json'), 'utf8')) as {
    entries: Array<{ when: number }>;
  };
  return Math.max(...journal.entries.map((e) => e.when));
}

/** Turns what the server or the socket said at open into one line that says what to fix. */
export function describePostgresError(err: unknown, location: string): Error {
  if (err instanceof GrantkeeperError) return err;
  const cause = (err as { cause?: unknown }).cause ?? err;
  const code = String((cause as { code?: unknown }).code ?? (err as { code?: unknown }).code ?? '');
  const message = (cause as Error).message ?? String(cause);
  const options = { cause: err };
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH') {
    return new GrantkeeperError(
      'store_unusable',
      `cannot reach PostgreSQL at ${location} (${code}): is it running, and is the host right?`,
      options,
    );
  }
  if (code === '28P01' || code === '28000') {
    return new GrantkeeperError(
      'store_unusable',
      `PostgreSQL at ${location} refused the login: check the user and password in GRANTKEEPER_DATABASE_URL`,
      options,
    );
  }
  if (code === '3D000') {
    return new GrantkeeperError(
      'store_unusable',
      `the database in ${location} does not exist: create it (createdb) or fix GRANTKEEPER_DATABASE_URL`,
      options,
    );
  }
  if (code === '42501') {
    return new GrantkeeperError(
      'store_unusable',
      `the PostgreSQL user of ${location} may not create grantkeeper's tables: grant it CREATE on the database`,
      options,
    );
  }
  if (code === '25006') {
    return new GrantkeeperError(
      'store_unusable',
      `PostgreSQL at ${location} accepts no writes (read-only): point GRANTKEEPER_DATABASE_URL at the primary`,
      options,
    );
  }
  if (postgresFailureOf(err)) {
    return new GrantkeeperError(
      'store_unusable',
      `PostgreSQL at ${location} is unavailable: ${firstLine(message)}`,
      options,
    );
  }
  return new GrantkeeperError(
    'store_unusable',
    `cannot open the PostgreSQL store at ${location}: ${firstLine(message)}`,
    options,
  );
}

/** Server messages are one line; driver ones may quote the statement after the first. */
function firstLine(message: string): string {
  return message.split('\n')[0]?.slice(0, 200) ?? '';
}
