import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../db/connection.js';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import { ClientStore } from '../../src/store/client-store.js';
import { GrantStore } from '../../src/store/grant-store.js';
import { verifySealingKey } from '../../src/store/key-check.js';
import { removeDir, tempDataDir, testProfile } from '../support/engine.js';

const key = Buffer.alloc(32, 7);
const sealer = new Sealer(new Keyring({ id: keyIdFor(key), key }));
const T0 = 1_800_000_000_000;

describe('grant store on a real SQLite file', () => {
  let dataDir: string;
  let store: Store;
  let grants: GrantStore;
  let clientRef: string;

  beforeAll(() => {
    dataDir = `${tempDataDir()}/nested/data`;
    store = openStore({ dataDir });
    grants = new GrantStore(store.db, sealer);
    clientRef = new ClientStore(store.db, sealer).upsert({
      name: 'c',
      profile: testProfile('https://id.example/token'),
      clientId: 'id',
      clientSecret: 'client-secret-value',
      authMethod: 'client_secret_basic',
      scopes: ['openid'],
      now: T0,
    }).id;
  });

  afterAll(() => {
    store?.close();
    if (dataDir) removeDir(dataDir.replace(/\/nested\/data$/, ''));
  });

  const seed = (label: string) =>
    grants.saveConsent({
      clientRef,
      label,
      accessToken: `at-${label}`,
      refreshToken: `rt-${label}`,
      accessExpiresAt: T0 + 3600_000,
      accessLifetimeMs: 3600_000,
      refreshTokenUsedAt: T0,
      nextRefreshAt: T0 + 3000_000,
      now: T0,
    });

  /** What a refresh that met invalid_grant leaves behind. */
  const markDead = (id: string) => {
    grants.claimLease(id, 0, 'a', T0, 1000);
    grants.recordFailure(
      id,
      0,
      'a',
      { state: 'needs_reconsent', message: 'invalid_grant' },
      {
        at: T0,
        trigger: 'schedule',
        outcome: 'needs_reconsent',
      },
    );
  };

  it('creates the data folder 0700 and the db 0600, in WAL mode', () => {
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(store.path).mode & 0o777).toBe(0o600);
    expect(store.sqlite.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.sqlite.pragma('busy_timeout', { simple: true })).toBe(5000);
  });

  it('stores tokens sealed and opens them again', () => {
    const g = seed('sealed');
    expect(g.accessTokenSealed).toMatch(/^gk1\./);
    expect(g.refreshTokenSealed).not.toContain('rt-sealed');
    expect(grants.openTokens(g)).toEqual({ accessToken: 'at-sealed', refreshToken: 'rt-sealed' });
  });

  it('grants one lease per version; an expired lease can be taken over', () => {
    const g = seed('lease');
    expect(grants.claimLease(g.id, g.version, 'a', T0, 1000)).toBe(true);
    expect(grants.claimLease(g.id, g.version, 'b', T0 + 500, 1000)).toBe(false);
    expect(grants.claimLease(g.id, g.version + 1, 'b', T0 + 2000, 1000)).toBe(false);
    expect(grants.claimLease(g.id, g.version, 'b', T0 + 1001, 1000)).toBe(true);
  });

  it('commits only at the claimed version and keeps the refresh token when none came', () => {
    const g = seed('commit');
    grants.claimLease(g.id, 0, 'a', T0, 1000);
    const update = {
      accessToken: 'at-2',
      accessExpiresAt: T0 + 7200_000,
      accessLifetimeMs: 3600_000,
      refreshTokenUsedAt: T0 + 3600_000,
      nextRefreshAt: T0 + 6600_000,
    };
    const event = { at: T0 + 3600_000, trigger: 'schedule', outcome: 'refreshed' as const };
    const committed = grants.commitRefresh(g.id, 0, update, event);
    expect(committed?.version).toBe(1);
    expect(committed?.leaseOwner).toBeNull();
    expect(grants.openTokens(committed!)).toEqual({ accessToken: 'at-2', refreshToken: 'rt-commit' });
    // An overtaken worker's late answer for version 0 changes nothing.
    expect(grants.commitRefresh(g.id, 0, { ...update, accessToken: 'at-stale' }, event)).toBeUndefined();
    expect(grants.openTokens(grants.get(g.id)!).accessToken).toBe('at-2');
    expect(grants.recentEvents(g.id)).toHaveLength(1);
  });

  it('records a failure only for the lease holder', () => {
    const g = seed('failure');
    grants.claimLease(g.id, 0, 'a', T0, 1000);
    const event = { at: T0, trigger: 'schedule', outcome: 'transient_error' as const, errorCode: 'http_503' };
    expect(grants.recordFailure(g.id, 0, 'b', { state: 'failing', message: 'x' }, event)).toBeUndefined();
    const failing = grants.recordFailure(
      g.id,
      0,
      'a',
      { state: 'failing', nextRefreshAt: T0 + 5000, message: 'x' },
      event,
    );
    expect(failing).toMatchObject({
      state: 'failing',
      consecutiveFailures: 1,
      nextRefreshAt: T0 + 5000,
      leaseOwner: null,
    });
  });

  it('re-consenting a label replaces its tokens in place and moves the version on', () => {
    const first = seed('reseed');
    markDead(first.id);
    const again = seed('reseed');
    expect(again.id).toBe(first.id);
    expect(again).toMatchObject({ state: 'active', version: 1, consecutiveFailures: 0, lastError: null });
    expect(grants.recentEvents(first.id)).toHaveLength(1);
  });

  it('lists only live grants due within the horizon', () => {
    const dead = seed('dead');
    markDead(dead.id);
    const due = grants.listSchedulable(T0 + 3000_000).map((g) => g.id);
    expect(due).toContain(grants.find('lease')?.id);
    expect(due).toContain(grants.find('failure')?.id);
    expect(due).not.toContain(dead.id);
    expect(grants.listSchedulable(T0 + 2999_999).map((g) => g.id)).toEqual([grants.find('failure')?.id]);
  });

  it('refuses to open the store with a different key, naming both key ids', () => {
    verifySealingKey(store.db, sealer);
    const other = Buffer.alloc(32, 9);
    const wrong = new Sealer(new Keyring({ id: keyIdFor(other), key: other }));
    expect(() => verifySealingKey(store.db, wrong)).toThrow(
      new RegExp(`${keyIdFor(key)}.*${keyIdFor(other)}`),
    );
  });
});
