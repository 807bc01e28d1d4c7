import { eq } from 'drizzle-orm';
import { meta } from '../../../db/sqlite/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import type { RekeyReport, Store, StoreAdmin } from '../../grants/ports.js';
import {
  resealValues,
  SEALED_CLIENTS_SQL,
  SEALED_GRANTS_SQL,
  type SealedRows,
  sealedValues,
  sealedWriters,
} from '../reseal.js';
import { KEY_CHECK_CONTEXT, KEY_CHECK_KEY, KEY_CHECK_VALUE } from '../seal-contexts.js';
import { SqliteApiKeyRepository } from './api-key-repository.js';
import { SqliteClientRepository } from './client-repository.js';
import { SqliteConsentLinkRepository } from './consent-link-repository.js';
import { SqliteGrantRepository } from './grant-repository.js';
import { SqliteServiceStateRepository } from './service-state-repository.js';
import { SqliteSessionRepository } from './session-repository.js';
import {
  MOVED_TO_KEY,
  type OpenStoreOptions,
  openSqliteDatabase,
  type SqliteDatabase,
} from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

/** The SQLite store, with its database for the few places that are about the file itself. */
export interface SqliteStore extends Store {
  database: SqliteDatabase;
}

/**
 * The embedded default: one SQLite file in the data folder, shared by the processes of one
 * machine (WAL, a busy timeout). Opens it, applies migrations, and builds every repository.
 */
export function openSqliteStore(options: OpenStoreOptions & { sealer: Sealer }): SqliteStore {
  const database = openSqliteDatabase(options);
  const { db } = database;
  refuseMovedStore(database);
  return {
    database,
    grants: new SqliteGrantRepository(db, options.sealer),
    clients: new SqliteClientRepository(db, options.sealer),
    apiKeys: new SqliteApiKeyRepository(db),
    sessions: new SqliteSessionRepository(db),
    consentLinks: new SqliteConsentLinkRepository(db, options.sealer),
    serviceState: new SqliteServiceStateRepository(db),
    admin: new SqliteStoreAdmin(database, options.sealer),
  };
}

/**
 * A store copied to PostgreSQL by migrate-store must not be refreshed from here any more: its
 * refresh tokens are the PostgreSQL replicas' now, and two holders of one refresh token kill it.
 */
function refuseMovedStore(database: SqliteDatabase): void {
  const moved = guarded(() => database.db.select().from(meta).where(eq(meta.key, MOVED_TO_KEY)).get());
  if (!moved) return;
  database.close();
  throw new GrantkeeperError(
    'store_unusable',
    `the store in ${database.path} was moved to ${moved.value}: set GRANTKEEPER_DATABASE_URL to use it there`,
  );
}

class SqliteStoreAdmin implements StoreAdmin {
  readonly kind = 'sqlite';
  readonly location: string;

  constructor(
    private readonly database: SqliteDatabase,
    private readonly sealer: Sealer,
  ) {
    this.location = database.path;
  }

  async ping(): Promise<void> {
    guarded(() => this.database.sqlite.prepare('select 1').get());
  }

  async check(): Promise<{ ok: boolean; detail: string }> {
    const detail = guarded(() => String(this.database.sqlite.pragma('quick_check', { simple: true })));
    return { ok: detail === 'ok', detail };
  }

  async verifySealingKey(): Promise<void> {
    const { db } = this.database;
    guarded(() => {
      const row = db.select().from(meta).where(eq(meta.key, KEY_CHECK_KEY)).get();
      if (!row) {
        db.insert(meta)
          .values({ key: KEY_CHECK_KEY, value: this.sealer.seal(KEY_CHECK_VALUE, KEY_CHECK_CONTEXT) })
          .run();
        return;
      }
      this.sealer.open(row.value, KEY_CHECK_CONTEXT);
    });
  }

  /**
   * In one IMMEDIATE transaction: no other process can commit a refresh between our read and our
   * write, which would otherwise let us put back tokens it had just rotated.
   */
  async rekey(): Promise<RekeyReport> {
    const { sqlite } = this.database;
    const run = sqlite.transaction((): RekeyReport => {
      const keyCheck = sqlite.prepare('select value from meta where key = ?').get(KEY_CHECK_KEY) as
        | { value: string }
        | undefined;
      const rows: SealedRows = {
        grants: sqlite.prepare(SEALED_GRANTS_SQL).all() as SealedRows['grants'],
        clients: sqlite.prepare(SEALED_CLIENTS_SQL).all() as SealedRows['clients'],
        keyCheck: keyCheck?.value,
      };
      const writers = sealedWriters((table, column, key) => {
        const prepared = sqlite.prepare(`update ${table} set ${column} = ? where ${key} = ?`);
        return (id, value) => prepared.run(value, id);
      });
      const values = sealedValues(rows, writers);
      return resealValues(values, this.sealer);
    });
    return guarded(() => run.immediate());
  }

  async close(): Promise<void> {
    this.database.close();
  }
}
