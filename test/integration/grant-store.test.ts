import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../db/connection.js';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import { ClientStore } from '../../src/store/client-store.js';
import { GrantStore } from '../../src/store/grant-store.js';
import { verifySealingKey } from '../../src/store/key-check.js';
import { removeDir, sleep, tempDataDir, testProfile } from '../support/engine.js';

const key = Buffer.alloc(32, 7);
const sealer = new Sealer(new Keyring({ id: keyIdFor(key), key }));
const T0 = 1_800_000_000_000;
/** Past the horizon the listing test looks at. */
const LATER = T0 + 3_500_000;

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
    grants.claim(id, 0, 'a', 1000, 0);
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

  it('grants one lease per version; an expired lease can be taken over', async () => {
    const g = seed('lease');
    expect(grants.claim(g.id, g.version, 'a', 40, 0)).toBeDefined();
    expect(grants.claim(g.id, g.version, 'b', 40, 0)).toBeUndefined();
    expect(grants.claim(g.id, g.version + 1, 'b', 40, 0)).toBeUndefined();
    await sleep(60);
    expect(grants.claim(g.id, g.version, 'b', 1000, 0)?.leaseOwner).toBe('b');
    grants.releaseLease(g.id, 'b', null);
  });

  it('measures leases on the store clock and reports what is left of them', () => {
    const g = seed('lease-view');
    expect(grants.leaseView(g.id)).toMatchObject({ leaseRemainingMs: null, sentAgoMs: null });
    grants.claim(g.id, 0, 'a', 5000, 0);
    const view = grants.leaseView(g.id)!;
    expect(view.leaseRemainingMs).toBeGreaterThan(4000);
    expect(view.leaseRemainingMs).toBeLessThanOrEqual(5000);
    // The lease time is the store's: nothing the caller's clock says enters the row.
    expect(Math.abs(view.grant.leaseUntil! - (Date.now() + view.leaseRemainingMs!))).toBeLessThan(1000);
  });

  it('fences a send: only the holder, at its version, with more than the minimum left', () => {
    const g = seed('fence');
    grants.claim(g.id, 0, 'a', 5000, 0);
    expect(grants.markSent(g.id, 0, 'b', 100)).toBeUndefined();
    expect(grants.markSent(g.id, 1, 'a', 100)).toBeUndefined();
    expect(grants.markSent(g.id, 0, 'a', 6000)).toBeUndefined();
    expect(grants.leaseView(g.id)?.sentAgoMs).toBeNull();
    const left = grants.markSent(g.id, 0, 'a', 100);
    expect(left).toBeGreaterThan(4000);
    expect(grants.leaseView(g.id)?.sentAgoMs).toBeGreaterThanOrEqual(0);
  });

  it('keeps a grant whose answer was lost in doubt until the grace has passed', async () => {
    const g = seed('in-doubt');
    grants.claim(g.id, 0, 'a', 200, 0);
    expect(grants.markSent(g.id, 0, 'a', 50)).toBeDefined();
    await sleep(250);
    // The lease ran out with a request sent and nothing settled.
    expect(grants.claim(g.id, 0, 'b', 1000, 60_000)).toBeUndefined();
    expect(grants.leaseView(g.id)).toMatchObject({ leaseRemainingMs: expect.any(Number) });
    expect(grants.leaseView(g.id)!.leaseRemainingMs!).toBeLessThan(0);
    // Where a replay is harmless the caller claims with no grace; the mark stays until settled.
    const taken = grants.claim(g.id, 0, 'b', 1000, 0);
    expect(taken?.leaseSentAt).not.toBeNull();
    // b never sent: giving the lease back restores the mark it found.
    grants.releaseLease(g.id, 'b', taken!.leaseSentAt);
    expect(grants.get(g.id)?.leaseSentAt).toBe(taken!.leaseSentAt);
    await sleep(30);
    expect(grants.claim(g.id, 0, 'c', 1000, 20)).toBeDefined();
    expect(grants.markSent(g.id, 0, 'c', 50)).toBeDefined();
    const lost = grants.recordFailure(
      g.id,
      0,
      'c',
      { state: 'failing', nextRefreshAt: LATER, message: 'timeout', inDoubt: true },
      { at: T0, trigger: 'schedule', outcome: 'in_doubt' },
    );
    expect(lost).toMatchObject({ leaseOwner: null, state: 'failing' });
    expect(lost?.leaseSentAt).not.toBeNull();
    expect(grants.fleetStats().inDoubt).toBe(1);
    expect(grants.claim(g.id, 0, 'd', 1000, 60_000)).toBeUndefined();
    // An answer settles it.
    grants.claim(g.id, 0, 'e', 1000, 0);
    const settled = grants.recordFailure(
      g.id,
      0,
      'e',
      { state: 'failing', nextRefreshAt: LATER, message: 'http_503' },
      { at: T0, trigger: 'schedule', outcome: 'transient_error' },
    );
    expect(settled?.leaseSentAt).toBeNull();
    expect(grants.fleetStats().inDoubt).toBe(0);
  });

  it('stores a late answer for a stopped grant without reviving it', () => {
    const g = seed('late');
    grants.claim(g.id, 0, 'a', 1000, 0);
    grants.recordFailure(
      g.id,
      0,
      'a',
      { state: 'needs_reconsent', message: 'invalid_grant (spent)' },
      { at: T0, trigger: 'schedule', outcome: 'needs_reconsent' },
    );
    const late = grants.commitRefresh(
      g.id,
      0,
      {
        accessToken: 'at-late',
        refreshToken: 'rt-late',
        accessExpiresAt: T0 + 7200_000,
        accessLifetimeMs: 3600_000,
        refreshTokenUsedAt: T0,
        nextRefreshAt: T0 + 6600_000,
      },
      { at: T0 + 1, trigger: 'schedule', outcome: 'refreshed' },
    );
    expect(late?.conflict).toBe(true);
    expect(late?.grant).toMatchObject({
      state: 'needs_reconsent',
      lastError: 'invalid_grant (spent)',
      version: 1,
    });
    expect(grants.openTokens(late!.grant)).toEqual({ accessToken: 'at-late', refreshToken: 'rt-late' });
    expect(grants.recentEvents(g.id)[0]?.outcome).toBe('conflict');
  });

  it('stores a salvaged refresh token and records the failure in one step', () => {
    const g = seed('salvage');
    grants.claim(g.id, 0, 'a', 1000, 0);
    expect(
      grants.commitRotationOnly(
        g.id,
        0,
        'b',
        { refreshToken: 'x', refreshTokenUsedAt: T0 },
        { nextRefreshAt: T0, message: 'm' },
        {
          at: T0,
          trigger: 'schedule',
          outcome: 'transient_error',
        },
      ),
    ).toBeUndefined();
    const row = grants.commitRotationOnly(
      g.id,
      0,
      'a',
      { refreshToken: 'rt-salvaged', refreshTokenUsedAt: T0 + 5 },
      { nextRefreshAt: LATER, message: 'protocol error' },
      { at: T0, trigger: 'schedule', outcome: 'transient_error' },
    );
    expect(row).toMatchObject({
      version: 1,
      state: 'failing',
      consecutiveFailures: 1,
      lastError: 'protocol error',
    });
    expect(grants.openTokens(row!)).toEqual({ accessToken: 'at-salvage', refreshToken: 'rt-salvaged' });
  });

  it('commits only at the claimed version and keeps the refresh token when none came', () => {
    const g = seed('commit');
    grants.claim(g.id, 0, 'a', 1000, 0);
    const update = {
      accessToken: 'at-2',
      accessExpiresAt: T0 + 7200_000,
      accessLifetimeMs: 3600_000,
      refreshTokenUsedAt: T0 + 3600_000,
      nextRefreshAt: T0 + 6600_000,
    };
    const event = { at: T0 + 3600_000, trigger: 'schedule', outcome: 'refreshed' as const };
    const committed = grants.commitRefresh(g.id, 0, update, event)?.grant;
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
    grants.claim(g.id, 0, 'a', 1000, 0);
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
