import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import type { ProviderProfile } from '../../src/oauth/providers.js';
import { newId } from '../../src/store/ids.js';
import { sealContext } from '../../src/store/seal-contexts.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';

export interface SeededDb {
  dataDir: string;
  /** GRANTKEEPER_KEY for the engine that opens this db. */
  key: string;
  grantIds: string[];
  /** Planned refresh time per grant, in grantIds order. */
  plannedAt: number[];
}

export const BENCH_CLIENT_SECRET = 'bench-client-secret';

export function benchProfile(tokenEndpoint: string): ProviderProfile {
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
  };
}

/**
 * A fresh data folder with `count` grants as consent capture would have left them: sealed with the
 * real Sealer under a fresh key, one confidential client. One prepared INSERT in one transaction,
 * so seeding 100,000 grants takes seconds and is not part of any figure.
 */
export async function seedGrants(opts: {
  /** The run's temp folder; the data folder is made inside it. */
  parentDir: string;
  count: number;
  tokenEndpoint: string;
  plannedAt: (index: number) => number;
}): Promise<SeededDb> {
  const dataDir = mkdtempSync(join(opts.parentDir, 'db-'));
  const keyBytes = randomBytes(32);
  const sealer = new Sealer(new Keyring({ id: keyIdFor(keyBytes), key: keyBytes }));
  const store = openSqliteStore({ dataDir, sealer });
  const { sqlite } = store.database;
  try {
    await store.admin.verifySealingKey();
    const now = Date.now();
    const client = await store.clients.upsert({
      name: 'bench',
      profile: benchProfile(opts.tokenEndpoint),
      clientId: 'bench-client',
      clientSecret: BENCH_CLIENT_SECRET,
      authMethod: 'client_secret_basic',
      scopes: ['openid', 'offline_access'],
      now,
    });
    const insert = sqlite.prepare(
      `INSERT INTO grants (id, client_ref, label, subject, state, mode, version, access_token_sealed,
         refresh_token_sealed, token_type, scope, access_expires_at, access_lifetime_ms,
         refresh_token_used_at, next_refresh_at, consecutive_failures, created_at, updated_at)
       VALUES (?, ?, ?, NULL, 'active', 'eager', 0, ?, ?, 'Bearer', 'openid offline_access', ?, 3600000, ?, ?, 0, ?, ?)`,
    );
    const tokenBody = randomBytes(48).toString('base64url');
    const grantIds: string[] = [];
    const plannedAt: number[] = [];
    sqlite.transaction(() => {
      for (let i = 0; i < opts.count; i++) {
        const id = newId('g');
        const due = opts.plannedAt(i);
        const tag = i.toString(36);
        insert.run(
          id,
          client.id,
          `bench-${tag}`,
          sealer.seal(`at_${tag}_${tokenBody}`, sealContext(id, 'access_token')),
          sealer.seal(`rt_${tag}_${tokenBody}`, sealContext(id, 'refresh_token')),
          due + 60_000,
          due - 3_540_000,
          due,
          now,
          now,
        );
        grantIds.push(id);
        plannedAt.push(due);
      }
    })();
    // Leave a compact db with no WAL behind, as a long-running install would have after a checkpoint.
    sqlite.pragma('wal_checkpoint(TRUNCATE)');
    return { dataDir, key: keyBytes.toString('base64'), grantIds, plannedAt };
  } finally {
    await store.admin.close();
  }
}
