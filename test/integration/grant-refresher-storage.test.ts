import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DB_FILE_NAME, openStore, type Store } from '../../db/connection.js';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import { createLogger } from '../../src/log/logger.js';
import { TokenClient } from '../../src/oauth/token-client.js';
import { DEFAULT_BACKOFF } from '../../src/policy/backoff.js';
import { DEFAULT_UNEXPLAINED_RULE } from '../../src/policy/failure-plan.js';
import { DEFAULT_REFRESH_TIMING } from '../../src/policy/refresh-timing.js';
import { GrantRefresher } from '../../src/refresh/grant-refresher.js';
import { ClientStore } from '../../src/store/client-store.js';
import { DiskReserve } from '../../src/store/disk-reserve.js';
import { GrantStore } from '../../src/store/grant-store.js';
import { StorageGate } from '../../src/store/storage-gate.js';
import { removeDir, sleep, tempDataDir, testProfile, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';

const key = Buffer.alloc(32, 9);
const sealer = new Sealer(new Keyring({ id: keyIdFor(key), key }));
const LEASE_MS = 10_000;

/**
 * The refresher against a real SQLite file whose write lock another connection takes at chosen
 * moments (a short busy timeout keeps the test quick), and a clock the test moves.
 */
describe('grant refresher when the database refuses writes', () => {
  let dataDir: string;
  let store: Store;
  let locker: Database.Database;
  let endpoint: FaultEndpoint;
  let tokenClient: TokenClient;
  let grants: GrantStore;
  let clientRef: string;
  let refresher: GrantRefresher;
  const clock = { offset: 0 };

  beforeEach(async () => {
    dataDir = tempDataDir();
    store = openStore({ dataDir, busyTimeoutMs: 20 });
    locker = new Database(join(dataDir, DB_FILE_NAME));
    endpoint = await startFaultEndpoint();
    tokenClient = new TokenClient({ timeoutMs: 5000 });
    grants = new GrantStore(store.db, sealer);
    clientRef = new ClientStore(store.db, sealer).upsert({
      name: 'c',
      profile: testProfile(endpoint.url),
      clientId: 'id',
      clientSecret: 'client-secret-value',
      authMethod: 'client_secret_basic',
      scopes: ['openid'],
      now: Date.now(),
    }).id;
    const logger = createLogger({ level: 'silent' });
    const now = () => Date.now() + clock.offset;
    clock.offset = 0;
    refresher = new GrantRefresher({
      grants,
      clients: new ClientStore(store.db, sealer),
      tokenClient,
      timing: DEFAULT_REFRESH_TIMING,
      backoff: DEFAULT_BACKOFF,
      logger,
      storage: new StorageGate({ reserve: new DiskReserve(dataDir, 0), logger, now }),
      leaseMs: LEASE_MS,
      inDoubtGraceMs: 60_000,
      unexplained: DEFAULT_UNEXPLAINED_RULE,
      now,
    });
  });

  afterEach(async () => {
    if (locker.inTransaction) locker.exec('ROLLBACK');
    locker.close();
    store.close();
    await tokenClient.close();
    await endpoint.close();
    removeDir(dataDir);
  });

  const seed = () => {
    const minted = endpoint.mintGrant();
    const now = Date.now();
    return grants.saveConsent({
      clientRef,
      label: `g-${Math.random().toString(36).slice(2, 8)}`,
      accessToken: minted.accessToken,
      refreshToken: minted.refreshToken,
      accessExpiresAt: now + 60_000,
      accessLifetimeMs: 60_000,
      refreshTokenUsedAt: now,
      nextRefreshAt: now,
      now,
    });
  };

  it('defers without sending anything when the claim meets a locked database', async () => {
    const grant = seed();
    locker.exec('BEGIN IMMEDIATE');
    const result = await refresher.refresh(grant.id, 0, 'schedule');
    expect(result).toMatchObject({ status: 'deferred', cause: 'locked' });
    expect(endpoint.requests).toHaveLength(0);
    locker.exec('ROLLBACK');
    expect(grants.get(grant.id)?.leaseOwner).toBeNull();
  });

  it('holds an answer the database refuses and stores it once the lock is gone', async () => {
    const grant = seed();
    endpoint.setDefault({ type: 'rotate', latencyMs: 300 });
    const pending = refresher.refresh(grant.id, 0, 'schedule');
    await waitFor(() => endpoint.requests.length === 1, 'the request sent');
    locker.exec('BEGIN IMMEDIATE');
    await waitFor(() => refresher.heldGrantIds().includes(grant.id), 'the answer held');
    await sleep(600);
    expect(grants.get(grant.id)?.version).toBe(0);
    locker.exec('COMMIT');
    const result = await pending;
    expect(result.status).toBe('refreshed');
    const row = grants.get(grant.id)!;
    expect(row.version).toBe(1);
    expect(endpoint.isAccessTokenValid(grants.openAccessToken(row))).toBe(true);
    expect(refresher.heldGrantIds()).toEqual([]);
    expect(endpoint.requests).toHaveLength(1);
  });

  it('never claims a grant it is still refreshing, even after its own lease has run out', async () => {
    const grant = seed();
    endpoint.setDefault({ type: 'rotate', latencyMs: 300 });
    const first = refresher.refresh(grant.id, 0, 'schedule');
    await waitFor(() => endpoint.requests.length === 1, 'the request sent');
    // As after an event-loop stall longer than the lease: this process's clock says it is over.
    clock.offset = LEASE_MS + 1000;
    const second = await refresher.refresh(grant.id, 0, 'schedule');
    expect(second.status).toBe('busy');
    expect((await first).status).toBe('refreshed');
    expect(endpoint.requests).toHaveLength(1);
    expect(endpoint.reuseDetections).toBe(0);
  });
});
