/**
 * `grantkeeper migrate-store`: copies a SQLite store into an empty PostgreSQL database, sealed values
 * as they are (their contexts name row ids, which are kept, so the same key opens them there). The
 * SQLite file is held under its write lock throughout, so nothing commits into it mid-copy, and is
 * marked as moved once the copy is verified: a service later started on it refuses, instead of
 * refreshing tokens the PostgreSQL replicas also hold (a replayed refresh token kills the grant).
 */
import { eq, sql } from 'drizzle-orm';
import * as pgSchema from '../../db/postgres/schema.js';
import * as sqliteSchema from '../../db/sqlite/schema.js';
import { SealError, type Sealer } from '../crypto/sealer.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import { openPostgresDatabase } from './postgres/postgres-database.js';
import { guarded } from './postgres/postgres-errors.js';
import { SEALED_CLIENTS_SQL, SEALED_GRANTS_SQL, type SealedRows, sealedValues } from './reseal.js';
import { KEY_CHECK_KEY } from './seal-contexts.js';
import { MOVED_TO_KEY, openSqliteDatabase } from './sqlite/sqlite-database.js';

/** The tables in the order their foreign keys need, each in both schemas. */
const SOURCE = {
  clients: sqliteSchema.clients,
  grants: sqliteSchema.grants,
  refreshEvents: sqliteSchema.refreshEvents,
  apiKeys: sqliteSchema.apiKeys,
  apiSessions: sqliteSchema.apiSessions,
  consentLinks: sqliteSchema.consentLinks,
  consentLinkAuthorizations: sqliteSchema.consentLinkAuthorizations,
  meta: sqliteSchema.meta,
};
const TARGET = {
  clients: pgSchema.clients,
  grants: pgSchema.grants,
  refreshEvents: pgSchema.refreshEvents,
  apiKeys: pgSchema.apiKeys,
  apiSessions: pgSchema.apiSessions,
  consentLinks: pgSchema.consentLinks,
  consentLinkAuthorizations: pgSchema.consentLinkAuthorizations,
  meta: pgSchema.meta,
};
type TableName = keyof typeof SOURCE;
const TABLES = Object.keys(SOURCE) as TableName[];
export type MigrationCounts = Record<TableName, number>;

export interface MigrationReport {
  target: string;
  copied: MigrationCounts;
  keyId: string;
}

const BATCH = 500;

export async function migrateStore(opts: {
  dataDir: string;
  sealer: Sealer;
  targetUrl: string;
  logger: Logger;
  /** Refuses while a refresh lease is held: a running service would go on rotating tokens here. */
  now?: () => number;
}): Promise<MigrationReport> {
  const source = openSqliteDatabase({ dataDir: opts.dataDir });
  try {
    const target = await openPostgresDatabase({ url: opts.targetUrl, create: true, logger: opts.logger });
    try {
      // The write lock first: a service that commits from now on waits, then fails, never lands.
      source.sqlite.exec('begin immediate');
      try {
        const rows = readSource(source.db, opts.now?.() ?? Date.now());
        // guarded: a refusal is the server's one line, never drizzle's statement with its values.
        const copied = await guarded(() =>
          target.db.transaction(async (tx) => {
            const present = await countRows(tx);
            if (TABLES.some((t) => present[t] > 0)) {
              throw new GrantkeeperError(
                'migration_refused',
                `${target.location} already holds a store (${TABLES.map((t) => `${present[t]} ${t}`).join(', ')}): migrate-store copies only into an empty database`,
              );
            }
            for (const table of TABLES) {
              const values = rows[table];
              for (let i = 0; i < values.length; i += BATCH) {
                await tx.insert(TARGET[table]).values(values.slice(i, i + BATCH) as never);
              }
            }
            // Event ids were copied; new ones continue after them.
            await tx.execute(
              sql`select setval(pg_get_serial_sequence('refresh_events', 'id'), greatest((select max(id) from refresh_events), 1))`,
            );
            const counts = await countRows(tx);
            const mismatched = TABLES.filter((t) => counts[t] !== rows[t].length);
            if (mismatched.length > 0) {
              throw new Error(`copied row counts differ for ${mismatched.join(', ')}`);
            }
            await verifySealed(tx, opts.sealer);
            return counts;
          }),
        );
        source.db
          .insert(sqliteSchema.meta)
          .values({ key: MOVED_TO_KEY, value: `${target.location} at ${new Date().toISOString()}` })
          .run();
        source.sqlite.exec('commit');
        return { target: target.location, copied, keyId: opts.sealer.primaryKeyId };
      } catch (err) {
        if (source.sqlite.inTransaction) source.sqlite.exec('rollback');
        throw err;
      }
    } finally {
      await target.close();
    }
  } finally {
    source.close();
  }
}

function readSource(db: ReturnType<typeof openSqliteDatabase>['db'], now: number) {
  const moved = db
    .select()
    .from(sqliteSchema.meta)
    .all()
    .find((m) => m.key === MOVED_TO_KEY);
  if (moved)
    throw new GrantkeeperError('migration_refused', `this store was already moved to ${moved.value}`);
  const leased = db
    .select({ n: sql<number>`count(*)` })
    .from(sqliteSchema.grants)
    .where(sql`${sqliteSchema.grants.leaseUntil} > ${now}`)
    .get();
  if ((leased?.n ?? 0) > 0) {
    throw new GrantkeeperError(
      'migration_refused',
      `${leased?.n} grants are being refreshed right now: stop grantkeeper run on this data folder first (nothing was copied)`,
    );
  }
  return Object.fromEntries(TABLES.map((t) => [t, db.select().from(SOURCE[t]).all() as unknown[]])) as Record<
    TableName,
    unknown[]
  >;
}

type PgTx = Parameters<
  Parameters<Awaited<ReturnType<typeof openPostgresDatabase>>['db']['transaction']>[0]
>[0];

async function countRows(tx: PgTx): Promise<MigrationCounts> {
  const counts = {} as MigrationCounts;
  for (const table of TABLES) {
    const [row] = await tx.select({ n: sql<number>`count(*)::integer` }).from(TARGET[table]);
    counts[table] = row?.n ?? 0;
  }
  return counts;
}

/** Every sealed value opens in its new home under the loaded key: the copy is usable as it stands. */
async function verifySealed(tx: PgTx, sealer: Sealer): Promise<void> {
  const [check] = await tx.select().from(pgSchema.meta).where(eq(pgSchema.meta.key, KEY_CHECK_KEY));
  const rows: SealedRows = {
    grants: (await tx.execute<SealedRows['grants'][number]>(sql.raw(SEALED_GRANTS_SQL))).rows,
    clients: (await tx.execute<SealedRows['clients'][number]>(sql.raw(SEALED_CLIENTS_SQL))).rows,
    keyCheck: check?.value,
  };
  const readOnly = {
    accessToken() {},
    refreshToken() {},
    clientSecret() {},
    previousClientSecret() {},
    clientKey() {},
    keyCheck() {},
  };
  try {
    for (const value of sealedValues(rows, readOnly)) sealer.open(value.sealed, value.context);
  } catch (err) {
    if (err instanceof SealError) {
      throw new GrantkeeperError(
        'sealing_key_unusable',
        `nothing was copied: a value of this store does not open with the loaded key (${err.message})`,
      );
    }
    throw err;
  }
}
