import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import type { ClientRepository, GrantRepository } from '../../src/grants/ports.js';
import { createLogger } from '../../src/log/logger.js';
import type { ProviderProfile } from '../../src/oauth/providers.js';
import { TokenClient } from '../../src/oauth/token-client.js';
import { DEFAULT_BACKOFF } from '../../src/policy/backoff.js';
import { DEFAULT_UNEXPLAINED_RULE, type UnexplainedRule } from '../../src/policy/failure-plan.js';
import { DEFAULT_REFRESH_TIMING } from '../../src/policy/refresh-timing.js';
import { GrantRefresher } from '../../src/refresh/grant-refresher.js';
import { DiskReserve } from '../../src/store/disk-reserve.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { StorageGate } from '../../src/store/storage-gate.js';
import { removeDir, tempDataDir, testProfile } from './engine.js';
import type { FaultEndpoint } from './fault-endpoint.js';

export interface RefresherRig {
  dataDir: string;
  store: SqliteStore;
  /** A second connection to the same file, to lock it or edit rows behind the refresher's back. */
  raw: Database.Database;
  grants: GrantRepository;
  clients: ClientRepository;
  clientRef: string;
  refresher: GrantRefresher;
  tokenClient: TokenClient;
  /** Every log line, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Moves the refresher's own clock (the store's clock is the machine's). */
  clock: { offset: number };
  /** A grant due now with tokens minted by the endpoint. */
  seed(opts?: { lifetimeMs?: number }): ReturnType<GrantRepository['saveConsent']>;
  close(): Promise<void>;
}

/**
 * The refresher on a real SQLite file against a fault endpoint, without Redis: for tests that drive
 * one refresh at a time and look at the row, the events and the log afterwards.
 */
export async function startRefresherRig(
  endpoint: FaultEndpoint,
  opts: {
    key?: Buffer;
    leaseMs?: number;
    timeoutMs?: number;
    busyTimeoutMs?: number;
    inDoubtGraceMs?: number;
    unexplained?: UnexplainedRule;
    profile?: Partial<ProviderProfile>;
  } = {},
): Promise<RefresherRig> {
  const key = opts.key ?? Buffer.alloc(32, 9);
  const sealer = new Sealer(new Keyring({ id: keyIdFor(key), key }));
  const dataDir = tempDataDir();
  const store = openSqliteStore({ dataDir, sealer, busyTimeoutMs: opts.busyTimeoutMs ?? 20 });
  const raw = new Database(join(dataDir, DB_FILE_NAME));
  const tokenClient = new TokenClient({ timeoutMs: opts.timeoutMs ?? 5000 });
  const { grants, clients } = store;
  const clientRef = (
    await clients.upsert({
      name: 'c',
      profile: testProfile(endpoint.url, opts.profile),
      clientId: 'id',
      clientSecret: 'client-secret-value',
      authMethod: 'client_secret_basic',
      scopes: ['openid'],
      now: Date.now(),
    })
  ).id;
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const clock = { offset: 0 };
  const now = () => Date.now() + clock.offset;
  const refresher = new GrantRefresher({
    grants,
    clients,
    tokenClient,
    timing: DEFAULT_REFRESH_TIMING,
    backoff: DEFAULT_BACKOFF,
    logger,
    storage: new StorageGate({ reserve: new DiskReserve(dataDir, 0), logger, now }),
    leaseMs: opts.leaseMs ?? 10_000,
    inDoubtGraceMs: opts.inDoubtGraceMs ?? 60_000,
    unexplained: opts.unexplained ?? DEFAULT_UNEXPLAINED_RULE,
    now,
  });
  return {
    dataDir,
    store,
    raw,
    grants,
    clients,
    clientRef,
    refresher,
    tokenClient,
    logs,
    clock,
    seed(seedOpts = {}) {
      const minted = endpoint.mintGrant();
      const at = Date.now();
      const lifetime = seedOpts.lifetimeMs ?? 60_000;
      return grants.saveConsent({
        clientRef,
        label: `g-${Math.random().toString(36).slice(2, 8)}`,
        accessToken: minted.accessToken,
        refreshToken: minted.refreshToken,
        accessExpiresAt: at + lifetime,
        accessLifetimeMs: lifetime,
        refreshTokenUsedAt: at,
        nextRefreshAt: at,
        now: at,
      });
    },
    async close() {
      if (raw.inTransaction) raw.exec('ROLLBACK');
      raw.close();
      await store.admin.close();
      await tokenClient.close();
      removeDir(dataDir);
    },
  };
}
