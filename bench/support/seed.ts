import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import type { Store } from '../../src/grants/ports.js';
import type { ProviderProfile } from '../../src/oauth/providers.js';
import type { RateLimit } from '../../src/pacing/rate-limit.js';
import { newId } from '../../src/store/ids.js';
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { sealContext } from '../../src/store/seal-contexts.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';

export interface SeededDb {
  /** The data folder (the SQLite store; with PostgreSQL an empty folder the config still names). */
  dataDir: string;
  /** Set when the grants were seeded into PostgreSQL: GRANTKEEPER_DATABASE_URL for the engine. */
  databaseUrl?: string;
  /** GRANTKEEPER_KEY for the engine that opens this db. */
  key: string;
  grantIds: string[];
  /** Planned refresh time per grant, in grantIds order. */
  plannedAt: number[];
}

export const BENCH_CLIENT_SECRET = 'bench-client-secret';

export function benchProfile(tokenEndpoint: string, rateLimit?: RateLimit): ProviderProfile {
  return {
    kind: 'oidc',
    authorizationEndpoint: tokenEndpoint.replace(/\/token$/, '/auth'),
    tokenEndpoint,
    defaultScopes: ['openid', 'offline_access'],
    offlineScope: 'offline_access',
    extraAuthorizeParams: {},
    confidentialAuthMethod: 'client_secret_basic',
    rotatesRefreshTokens: true,
    oldRefreshTokensStayValid: false,
    defaultAccessLifetimeSec: 3600,
    refreshIdleLimitSec: 90 * 86_400,
    keepAliveIntervalSec: 30 * 86_400,
    ...(rateLimit ? { rateLimit } : {}),
  };
}

/** One synthetic grant row, the same values whichever store it goes into. */
interface SeedRow {
  id: string;
  label: string;
  accessSealed: string;
  refreshSealed: string;
  accessExpiresAt: number;
  refreshTokenUsedAt: number;
  nextRefreshAt: number;
}

function* seedRows(sealer: Sealer, count: number, plannedAt: (index: number) => number): Generator<SeedRow> {
  const tokenBody = randomBytes(48).toString('base64url');
  for (let i = 0; i < count; i++) {
    const id = newId('g');
    const due = plannedAt(i);
    const tag = i.toString(36);
    yield {
      id,
      label: `bench-${tag}`,
      accessSealed: sealer.seal(`at_${tag}_${tokenBody}`, sealContext(id, 'access_token')),
      refreshSealed: sealer.seal(`rt_${tag}_${tokenBody}`, sealContext(id, 'refresh_token')),
      accessExpiresAt: due + 60_000,
      refreshTokenUsedAt: due - 3_540_000,
      nextRefreshAt: due,
    };
  }
}

async function upsertBenchClient(store: Store, opts: SeedOptions, now: number) {
  return store.clients.upsert({
    name: 'bench',
    profile: benchProfile(opts.tokenEndpoint, opts.rateLimit),
    clientId: 'bench-client',
    clientSecret: BENCH_CLIENT_SECRET,
    authMethod: 'client_secret_basic',
    scopes: ['openid', 'offline_access'],
    now,
  });
}

export interface SeedOptions {
  /** The run's temp folder; the data folder is made inside it. */
  parentDir: string;
  count: number;
  tokenEndpoint: string;
  plannedAt: (index: number) => number;
  /** Seed into this (empty) PostgreSQL database instead of a SQLite db in the data folder. */
  databaseUrl?: string;
  /** The client's `rate` setting (shared by every worker); unset: no limit. */
  rateLimit?: RateLimit;
}

/** Rows per multi-row INSERT into PostgreSQL. */
const PG_BATCH = 5000;

/**
 * A fresh data folder with `count` grants as consent capture would have left them: sealed with the
 * real Sealer under a fresh key, one confidential client. SQLite: one prepared INSERT in one
 * transaction. PostgreSQL (`databaseUrl`, an empty database): the store migrates it, then the grants
 * go in as `insert … select from unnest(…)` batches of 5,000 in one transaction. Either way seeding
 * 100,000 grants takes seconds and is not part of any figure.
 */
export async function seedGrants(opts: SeedOptions): Promise<SeededDb> {
  if (opts.databaseUrl) return seedPostgres({ ...opts, databaseUrl: opts.databaseUrl });
  const dataDir = mkdtempSync(join(opts.parentDir, 'db-'));
  const keyBytes = randomBytes(32);
  const sealer = new Sealer(new Keyring({ id: keyIdFor(keyBytes), key: keyBytes }));
  const store = openSqliteStore({ dataDir, sealer });
  const { sqlite } = store.database;
  try {
    await store.admin.verifySealingKey();
    const now = Date.now();
    const client = await upsertBenchClient(store, opts, now);
    const insert = sqlite.prepare(
      `INSERT INTO grants (id, client_ref, label, subject, state, mode, version, access_token_sealed,
         refresh_token_sealed, token_type, scope, access_expires_at, access_lifetime_ms,
         refresh_token_used_at, next_refresh_at, consecutive_failures, created_at, updated_at)
       VALUES (?, ?, ?, NULL, 'active', 'eager', 0, ?, ?, 'Bearer', 'openid offline_access', ?, 3600000, ?, ?, 0, ?, ?)`,
    );
    const grantIds: string[] = [];
    const plannedAt: number[] = [];
    sqlite.transaction(() => {
      for (const row of seedRows(sealer, opts.count, opts.plannedAt)) {
        insert.run(
          row.id,
          client.id,
          row.label,
          row.accessSealed,
          row.refreshSealed,
          row.accessExpiresAt,
          row.refreshTokenUsedAt,
          row.nextRefreshAt,
          now,
          now,
        );
        grantIds.push(row.id);
        plannedAt.push(row.nextRefreshAt);
      }
    })();
    // Leave a compact db with no WAL behind, as a long-running install would have after a checkpoint.
    sqlite.pragma('wal_checkpoint(TRUNCATE)');
    return { dataDir, key: keyBytes.toString('base64'), grantIds, plannedAt };
  } finally {
    await store.admin.close();
  }
}

async function seedPostgres(opts: SeedOptions & { databaseUrl: string }): Promise<SeededDb> {
  const dataDir = mkdtempSync(join(opts.parentDir, 'pg-'));
  const keyBytes = randomBytes(32);
  const sealer = new Sealer(new Keyring({ id: keyIdFor(keyBytes), key: keyBytes }));
  // The store creates grantkeeper's tables (migrations) in the empty database.
  const store = await openPostgresStore({ url: opts.databaseUrl, sealer, create: true });
  const grantIds: string[] = [];
  const plannedAt: number[] = [];
  try {
    await store.admin.verifySealingKey();
    const now = Date.now();
    const client = await upsertBenchClient(store, opts, now);
    const pgClient = new pg.Client({ connectionString: opts.databaseUrl });
    await pgClient.connect();
    try {
      await pgClient.query('begin');
      let batch: SeedRow[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        await pgClient.query(
          `insert into grants (id, client_ref, label, subject, state, mode, version, access_token_sealed,
             refresh_token_sealed, token_type, scope, access_expires_at, access_lifetime_ms,
             refresh_token_used_at, next_refresh_at, consecutive_failures, created_at, updated_at)
           select r.id, $1, r.label, null, 'active', 'eager', 0, r.at, r.rt, 'Bearer', 'openid offline_access',
             r.expires, 3600000, r.used, r.next, 0, $2, $2
           from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
             as r(id, label, at, rt, expires, used, next)`,
          [
            client.id,
            now,
            batch.map((r) => r.id),
            batch.map((r) => r.label),
            batch.map((r) => r.accessSealed),
            batch.map((r) => r.refreshSealed),
            batch.map((r) => r.accessExpiresAt),
            batch.map((r) => r.refreshTokenUsedAt),
            batch.map((r) => r.nextRefreshAt),
          ],
        );
        batch = [];
      };
      for (const row of seedRows(sealer, opts.count, opts.plannedAt)) {
        batch.push(row);
        grantIds.push(row.id);
        plannedAt.push(row.nextRefreshAt);
        if (batch.length >= PG_BATCH) await flush();
      }
      await flush();
      await pgClient.query('commit');
      // Fresh statistics and a visibility map, as autovacuum would have left a long-running install.
      await pgClient.query('vacuum analyze');
    } finally {
      await pgClient.end();
    }
    return {
      dataDir,
      databaseUrl: opts.databaseUrl,
      key: keyBytes.toString('base64'),
      grantIds,
      plannedAt,
    };
  } finally {
    await store.admin.close();
  }
}
