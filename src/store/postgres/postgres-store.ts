import { type SQL, sql } from 'drizzle-orm';
import type { Sealer } from '../../crypto/sealer.js';
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
import { PostgresApiKeyRepository } from './api-key-repository.js';
import { PostgresClientRepository } from './client-repository.js';
import { PostgresConsentLinkRepository } from './consent-link-repository.js';
import { PostgresGrantRepository } from './grant-repository.js';
import {
  type OpenPostgresOptions,
  openPostgresDatabase,
  type PostgresDatabase,
} from './postgres-database.js';
import { guarded } from './postgres-errors.js';
import { PostgresServiceStateRepository } from './service-state-repository.js';
import { PostgresSessionRepository } from './session-repository.js';

/**
 * The store for several replicas: one PostgreSQL database shared by every grantkeeper process of
 * every machine, with nothing on their own disks. Opens the pool, migrates once across replicas,
 * and builds every repository.
 */
export async function openPostgresStore(options: OpenPostgresOptions & { sealer: Sealer }): Promise<Store> {
  const database = await openPostgresDatabase(options);
  const { db, pool } = database;
  return {
    grants: new PostgresGrantRepository(db, pool, options.sealer),
    clients: new PostgresClientRepository(db, pool, options.sealer),
    apiKeys: new PostgresApiKeyRepository(db),
    sessions: new PostgresSessionRepository(db),
    consentLinks: new PostgresConsentLinkRepository(db, options.sealer),
    serviceState: new PostgresServiceStateRepository(db),
    admin: new PostgresStoreAdmin(database, options.sealer),
  };
}

class PostgresStoreAdmin implements StoreAdmin {
  readonly kind = 'postgres';
  readonly location: string;

  constructor(
    private readonly database: PostgresDatabase,
    private readonly sealer: Sealer,
  ) {
    this.location = database.location;
  }

  async ping(): Promise<void> {
    await guarded(() => this.database.pool.query('select 1'));
  }

  async check(): Promise<{ ok: boolean; detail: string }> {
    return guarded(async () => {
      const { rows } = await this.database.pool.query<{ version: string; grants: number }>(
        `select current_setting('server_version') as version, (select count(*) from grants)::integer as grants`,
      );
      const row = rows[0];
      return { ok: row !== undefined, detail: `ok (PostgreSQL ${row?.version}, ${row?.grants} grants)` };
    });
  }

  /**
   * The first replica to start seals the check value; `on conflict do nothing` lets replicas
   * starting together agree on one, which each then opens.
   */
  async verifySealingKey(): Promise<void> {
    const { pool } = this.database;
    const sealed = this.sealer.seal(KEY_CHECK_VALUE, KEY_CHECK_CONTEXT);
    const { rows } = await guarded(() =>
      pool.query<{ value: string }>(
        `with inserted as (insert into meta (key, value) values ($1, $2) on conflict (key) do nothing returning value)
         select value from inserted union all select value from meta where key = $1 limit 1`,
        [KEY_CHECK_KEY, sealed],
      ),
    );
    const stored = rows[0]?.value ?? sealed;
    this.sealer.open(stored, KEY_CHECK_CONTEXT);
  }

  /**
   * In one transaction holding EXCLUSIVE locks on the sealed tables: reads go on, but no replica can
   * commit a refresh between our read and our write, which would let us put back rotated tokens.
   */
  async rekey(): Promise<RekeyReport> {
    return guarded(() =>
      this.database.db.transaction(async (tx) => {
        await tx.execute(sql`lock table grants, clients, meta in exclusive mode`);
        const keyCheck = await tx.execute<{ value: string }>(
          sql`select value from meta where key = ${KEY_CHECK_KEY}`,
        );
        const rows: SealedRows = {
          grants: (await tx.execute<SealedRows['grants'][number]>(sql.raw(SEALED_GRANTS_SQL))).rows,
          clients: (await tx.execute<SealedRows['clients'][number]>(sql.raw(SEALED_CLIENTS_SQL))).rows,
          keyCheck: keyCheck.rows[0]?.value,
        };
        // resealValues opens every value before it writes any; the writes are queued, then run in order.
        const writes: SQL[] = [];
        const queue = (statement: SQL) => void writes.push(statement);
        const writers = sealedWriters(
          (table, column, key) => (id, v) =>
            queue(sql`update ${sql.raw(table)} set ${sql.raw(column)} = ${v} where ${sql.raw(key)} = ${id}`),
        );
        const report = resealValues(sealedValues(rows, writers), this.sealer);
        for (const statement of writes) await tx.execute(statement);
        return report;
      }),
    );
  }

  async close(): Promise<void> {
    await this.database.close();
  }
}
