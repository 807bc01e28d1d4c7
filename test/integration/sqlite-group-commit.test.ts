import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../src/grants/ports.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { sealerOf } from '../contract/store-contract.js';
import { removeDir, tempDataDir, testProfile } from '../support/engine.js';

const LEASE = 60_000;
const COUNT = 64;

// Per refresh a SQLite commit was the largest CPU cost: refreshes that claim, fence and commit
// together must share a commit, while each caller still learns only after it (invariant 3).
describe('SQLite group commit', () => {
  const dataDir = tempDataDir();
  let store: Store;
  let clientRef: string;
  let outside: Database.Database;

  beforeAll(async () => {
    store = await openSqliteStore({ dataDir, sealer: sealerOf(3) });
    outside = new Database(join(dataDir, DB_FILE_NAME));
    clientRef = (
      await store.clients.upsert({
        name: 'batch',
        profile: testProfile('https://id.example/token'),
        clientId: 'batch-id',
        clientSecret: 'batch-secret',
        authMethod: 'client_secret_basic',
        scopes: ['openid'],
        now: Date.now(),
      })
    ).id;
  });
  afterAll(async () => {
    outside?.close();
    await store?.admin.close();
    removeDir(dataDir);
  });

  const seedGrants = async () => {
    const now = Date.now();
    const grants = [];
    for (let i = 0; i < COUNT; i++) {
      grants.push(
        await store.grants.saveConsent({
          clientRef,
          label: `@batch-${now}-${i}`,
          accessToken: `at-${i}`,
          refreshToken: `rt-${i}`,
          accessExpiresAt: now + 3_600_000,
          accessLifetimeMs: 3_600_000,
          refreshTokenUsedAt: now,
          nextRefreshAt: now,
          now,
        }),
      );
    }
    return grants;
  };
  /** WAL frames written since the last truncating checkpoint: every commit appends at least one. */
  const walFrames = () => {
    const [row] = outside.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
    return row?.log ?? 0;
  };

  it('claims, fences and commits asked for together share commits, and each answer follows its commit', async () => {
    const grants = await seedGrants();
    outside.pragma('wal_checkpoint(TRUNCATE)');
    expect(walFrames()).toBe(0);
    const claimed = await Promise.all(grants.map((g) => store.grants.claim(g.id, 0, `w${g.id}`, LEASE, 0)));
    expect(claimed.every((c) => c !== undefined)).toBe(true);
    const fenced = await Promise.all(grants.map((g) => store.grants.markSent(g.id, 0, `w${g.id}`, 1000)));
    expect(fenced.every((ms) => ms !== undefined && ms > 1000)).toBe(true);
    const now = Date.now();
    const committed = await Promise.all(
      grants.map((g) =>
        store.grants.commitRefresh(
          g.id,
          0,
          {
            accessToken: `at-new-${g.id}`,
            refreshToken: `rt-new-${g.id}`,
            accessExpiresAt: now + 3_600_000,
            accessLifetimeMs: 3_600_000,
            refreshTokenUsedAt: now,
            nextRefreshAt: now + 3_000_000,
          },
          { at: now, trigger: 'test', outcome: 'refreshed' },
        ),
      ),
    );
    // One commit per write would be at least 3 × COUNT frames.
    expect(walFrames()).toBeLessThan(COUNT);
    // Every answer was durable when given: another connection reads each new token.
    for (const [i, g] of grants.entries()) {
      expect(committed[i]?.grant.version).toBe(1);
      const row = outside.prepare('select version, lease_owner from grants where id = ?').get(g.id);
      expect(row).toEqual({ version: 1, lease_owner: null });
    }
  });
});
