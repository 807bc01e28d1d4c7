import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import type { GrantRepository } from '../../src/grants/ports.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { removeDir, sleep, tempDataDir, testProfile } from '../support/engine.js';

const key = Buffer.alloc(32, 7);
const sealer = new Sealer(new Keyring({ id: keyIdFor(key), key }));
const T0 = 1_800_000_000_000;
/** Past the horizon the listing test looks at. */
const LATER = T0 + 3_500_000;

describe('grant store on a real SQLite file', () => {
  let dataDir: string;
  let store: SqliteStore;
  let grants: GrantRepository;
  let clientRef: string;

  beforeAll(async () => {
    dataDir = `${tempDataDir()}/nested/data`;
    store = openSqliteStore({ dataDir, sealer });
    grants = store.grants;
    clientRef = (
      await store.clients.upsert({
        name: 'c',
        profile: testProfile('https://id.example/token'),
        clientId: 'id',
        clientSecret: 'client-secret-value',
        authMethod: 'client_secret_basic',
        scopes: ['openid'],
        now: T0,
      })
    ).id;
  });

  afterAll(async () => {
    await store?.admin.close();
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
  const markDead = async (id: string) => {
    await grants.claim(id, 0, 'a', 1000, 0);
    await grants.recordFailure(
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

  it('creates the data folder 0700 and the db 0600, in WAL mode', async () => {
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(store.database.path).mode & 0o777).toBe(0o600);
    expect(store.database.sqlite.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.database.sqlite.pragma('busy_timeout', { simple: true })).toBe(5000);
    // A 2 MiB page cache, not better-sqlite3's 16 MB: resident memory in a catch-up.
    expect(store.database.sqlite.pragma('cache_size', { simple: true })).toBe(-2048);
  });

  /** Both tokens of a grant as the store holds them, in clear. */
  const tokensOf = async (id: string) => {
    const { tokens } = (await grants.get(id))!;
    return { accessToken: tokens.accessToken(), refreshToken: tokens.refreshToken() };
  };

  it('stores tokens sealed and opens them again', async () => {
    const g = await seed('sealed');
    const row = store.database.sqlite
      .prepare('SELECT access_token_sealed AS a, refresh_token_sealed AS r FROM grants WHERE id = ?')
      .get(g.id) as { a: string; r: string };
    expect(row.a).toMatch(/^gk1\./);
    expect(row.r).not.toContain('rt-sealed');
    expect(await tokensOf(g.id)).toEqual({ accessToken: 'at-sealed', refreshToken: 'rt-sealed' });
  });

  it('grants one lease per version; an expired lease can be taken over', async () => {
    const g = await seed('lease');
    expect(await grants.claim(g.id, g.version, 'a', 40, 0)).toBeDefined();
    expect(await grants.claim(g.id, g.version, 'b', 40, 0)).toBeUndefined();
    expect(await grants.claim(g.id, g.version + 1, 'b', 40, 0)).toBeUndefined();
    await sleep(60);
    expect((await grants.claim(g.id, g.version, 'b', 1000, 0))?.grant.leaseOwner).toBe('b');
    await grants.releaseLease(g.id, 'b', null);
  });

  it('measures leases on the store clock and reports what is left of them', async () => {
    const g = await seed('lease-view');
    expect(await grants.leaseView(g.id)).toMatchObject({ leaseRemainingMs: null, sentAgoMs: null });
    await grants.claim(g.id, 0, 'a', 5000, 0);
    const view = (await grants.leaseView(g.id))!;
    expect(view.leaseRemainingMs).toBeGreaterThan(4000);
    expect(view.leaseRemainingMs).toBeLessThanOrEqual(5000);
    // The lease time is the store's: nothing the caller's clock says enters the row.
    expect(Math.abs(view.grant.leaseUntil! - (Date.now() + view.leaseRemainingMs!))).toBeLessThan(1000);
  });

  it('fences a send: only the holder, at its version, with more than the minimum left', async () => {
    const g = await seed('fence');
    await grants.claim(g.id, 0, 'a', 5000, 0);
    expect(await grants.markSent(g.id, 0, 'b', 100)).toBeUndefined();
    expect(await grants.markSent(g.id, 1, 'a', 100)).toBeUndefined();
    expect(await grants.markSent(g.id, 0, 'a', 6000)).toBeUndefined();
    expect((await grants.leaseView(g.id))?.sentAgoMs).toBeNull();
    const left = await grants.markSent(g.id, 0, 'a', 100);
    expect(left).toBeGreaterThan(4000);
    expect((await grants.leaseView(g.id))?.sentAgoMs).toBeGreaterThanOrEqual(0);
  });

  it('keeps a grant whose answer was lost in doubt until the grace has passed', async () => {
    const g = await seed('in-doubt');
    await grants.claim(g.id, 0, 'a', 200, 0);
    expect(await grants.markSent(g.id, 0, 'a', 50)).toBeDefined();
    await sleep(250);
    // The lease ran out with a request sent and nothing settled.
    expect(await grants.claim(g.id, 0, 'b', 1000, 60_000)).toBeUndefined();
    expect(await grants.leaseView(g.id)).toMatchObject({ leaseRemainingMs: expect.any(Number) });
    expect((await grants.leaseView(g.id))!.leaseRemainingMs!).toBeLessThan(0);
    // Where a replay is harmless the caller claims with no grace; the mark stays until settled.
    const taken = await grants.claim(g.id, 0, 'b', 1000, 0);
    expect(taken?.grant.leaseSentAt).not.toBeNull();
    // b never sent: giving the lease back restores the mark it found.
    await grants.releaseLease(g.id, 'b', taken!.grant.leaseSentAt);
    expect((await grants.get(g.id))?.grant.leaseSentAt).toBe(taken!.grant.leaseSentAt);
    await sleep(30);
    expect(await grants.claim(g.id, 0, 'c', 1000, 20)).toBeDefined();
    expect(await grants.markSent(g.id, 0, 'c', 50)).toBeDefined();
    const lost = await grants.recordFailure(
      g.id,
      0,
      'c',
      { state: 'failing', nextRefreshAt: LATER, message: 'timeout', inDoubt: true },
      { at: T0, trigger: 'schedule', outcome: 'in_doubt' },
    );
    expect(lost).toMatchObject({ leaseOwner: null, state: 'failing' });
    expect(lost?.leaseSentAt).not.toBeNull();
    expect((await grants.fleetStats()).inDoubt).toBe(1);
    expect(await grants.claim(g.id, 0, 'd', 1000, 60_000)).toBeUndefined();
    // An answer settles it.
    await grants.claim(g.id, 0, 'e', 1000, 0);
    const settled = await grants.recordFailure(
      g.id,
      0,
      'e',
      { state: 'failing', nextRefreshAt: LATER, message: 'http_503' },
      { at: T0, trigger: 'schedule', outcome: 'transient_error' },
    );
    expect(settled?.leaseSentAt).toBeNull();
    expect((await grants.fleetStats()).inDoubt).toBe(0);
  });

  it('stores a late answer for a stopped grant without reviving it', async () => {
    const g = await seed('late');
    await grants.claim(g.id, 0, 'a', 1000, 0);
    await grants.recordFailure(
      g.id,
      0,
      'a',
      { state: 'needs_reconsent', message: 'invalid_grant (spent)' },
      { at: T0, trigger: 'schedule', outcome: 'needs_reconsent' },
    );
    const late = await grants.commitRefresh(
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
    expect(await tokensOf(late!.grant.id)).toEqual({ accessToken: 'at-late', refreshToken: 'rt-late' });
    expect((await grants.recentEvents(g.id, 10))[0]?.outcome).toBe('conflict');
  });

  it('stores a salvaged refresh token and records the failure in one step', async () => {
    const g = await seed('salvage');
    await grants.claim(g.id, 0, 'a', 1000, 0);
    expect(
      await grants.commitRotationOnly(
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
    const row = await grants.commitRotationOnly(
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
    expect(await tokensOf(row!.id)).toEqual({ accessToken: 'at-salvage', refreshToken: 'rt-salvaged' });
  });

  it('commits only at the claimed version and keeps the refresh token when none came', async () => {
    const g = await seed('commit');
    await grants.claim(g.id, 0, 'a', 1000, 0);
    const update = {
      accessToken: 'at-2',
      accessExpiresAt: T0 + 7200_000,
      accessLifetimeMs: 3600_000,
      refreshTokenUsedAt: T0 + 3600_000,
      nextRefreshAt: T0 + 6600_000,
    };
    const event = { at: T0 + 3600_000, trigger: 'schedule', outcome: 'refreshed' as const };
    const committed = (await grants.commitRefresh(g.id, 0, update, event))?.grant;
    expect(committed?.version).toBe(1);
    expect(committed?.leaseOwner).toBeNull();
    expect(await tokensOf(committed!.id)).toEqual({ accessToken: 'at-2', refreshToken: 'rt-commit' });
    // An overtaken worker's late answer for version 0 changes nothing.
    expect(
      await grants.commitRefresh(g.id, 0, { ...update, accessToken: 'at-stale' }, event),
    ).toBeUndefined();
    expect((await tokensOf(g.id)).accessToken).toBe('at-2');
    expect(await grants.recentEvents(g.id, 10)).toHaveLength(1);
  });

  it('records a failure only for the lease holder', async () => {
    const g = await seed('failure');
    await grants.claim(g.id, 0, 'a', 1000, 0);
    const event = { at: T0, trigger: 'schedule', outcome: 'transient_error' as const, errorCode: 'http_503' };
    expect(
      await grants.recordFailure(g.id, 0, 'b', { state: 'failing', message: 'x' }, event),
    ).toBeUndefined();
    const failing = await grants.recordFailure(
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

  it('re-consenting a label replaces its tokens in place and moves the version on', async () => {
    const first = await seed('reseed');
    await markDead(first.id);
    const again = await seed('reseed');
    expect(again.id).toBe(first.id);
    expect(again).toMatchObject({ state: 'active', version: 1, consecutiveFailures: 0, lastError: null });
    expect(await grants.recentEvents(first.id, 10)).toHaveLength(1);
  });

  it('lists only live grants due within the horizon', async () => {
    const dead = await seed('dead');
    await markDead(dead.id);
    const due = (await grants.listSchedulable(T0 + 3000_000, { limit: 1000 })).map((g) => g.id);
    expect(due).toContain((await grants.find('lease'))?.grant.id);
    expect(due).toContain((await grants.find('failure'))?.grant.id);
    expect(due).not.toContain(dead.id);
    expect((await grants.listSchedulable(T0 + 2999_999, { limit: 1000 })).map((g) => g.id)).toEqual([
      (await grants.find('failure'))?.grant.id,
    ]);
  });

  it('refuses to open the store with a different key, naming both key ids', async () => {
    await store.admin.verifySealingKey();
    const other = Buffer.alloc(32, 9);
    const wrong = new Sealer(new Keyring({ id: keyIdFor(other), key: other }));
    const wrongStore = openSqliteStore({ dataDir, sealer: wrong });
    try {
      await expect(wrongStore.admin.verifySealingKey()).rejects.toThrow(
        new RegExp(`${keyIdFor(key)}.*${keyIdFor(other)}`),
      );
    } finally {
      await wrongStore.admin.close();
    }
  });
});
