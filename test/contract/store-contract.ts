import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import type { RefreshEvent } from '../../src/grants/grant.js';
import type { ConsentLink, SaveConsentInput, Store } from '../../src/grants/ports.js';
import { StorageError } from '../../src/grants/storage-error.js';
import { sleep, testProfile } from '../support/engine.js';

/**
 * The contract every store adapter keeps (src/grants/ports.ts), run against each one. It speaks
 * only through the ports: no SQL, no file, no connection. Leases are measured on the store's clock,
 * so lease tests use real time and short leases rather than a fake clock.
 */
export interface StoreUnderTest {
  /** Opens the adapter's one store under test; may be called again to reopen it with another key. */
  open(sealer: Sealer): Promise<Store>;
  /** Drops everything the store holds (the folder, the database). */
  dispose(): Promise<void>;
  /**
   * From outside the store: every event insert (only those of `grantId` when given) fails, by a
   * trigger, until the returned undo runs.
   */
  failEventInserts(grantId?: string): Promise<() => Promise<void>>;
  /**
   * From another connection: holds the store's write lock, longer than the store under test waits
   * for it (the setup opens it with a short lock wait), until the returned release runs.
   */
  holdWriteLock(): Promise<() => Promise<void>>;
  /** From outside the store: the pending authorizations' PKCE verifiers as the database holds them. */
  storedCodeVerifiers(): Promise<string[]>;
}

export function sealerOf(fill: number, previous: number[] = []): Sealer {
  const key = (n: number) => {
    const bytes = Buffer.alloc(32, n);
    return { id: keyIdFor(bytes), key: bytes };
  };
  return new Sealer(new Keyring(key(fill), previous.map(key)));
}

const LEASE = 10_000;
/** Stands in for a PEM: the store seals and opens it as text, whatever it holds. */
const PRIVATE_KEY_PEM = '-----BEGIN PRIVATE KEY-----\ncontract\n-----END PRIVATE KEY-----\n';
const GRACE = 600_000;

export function describeStoreContract(adapter: string, setup: () => Promise<StoreUnderTest>): void {
  describe(`store contract: ${adapter}`, () => {
    const sealer = sealerOf(7);
    let subject: StoreUnderTest;
    let store: Store;
    let clientRef: string;
    let serial = 0;

    beforeAll(async () => {
      subject = await setup();
      store = await subject.open(sealer);
      await store.admin.verifySealingKey();
      clientRef = (
        await store.clients.upsert({
          name: 'contract',
          profile: testProfile('https://id.example/token'),
          clientId: 'contract-id',
          clientSecret: 'contract-client-secret',
          authMethod: 'client_secret_basic',
          scopes: ['openid', 'offline_access'],
          now: Date.now(),
        })
      ).id;
    });

    afterAll(async () => {
      await store?.admin.close();
      await subject?.dispose();
    });

    const consent = (overrides: Partial<SaveConsentInput> = {}): SaveConsentInput => {
      const now = Date.now();
      serial += 1;
      return {
        clientRef,
        label: `@contract-${serial}`,
        accessToken: `at-${serial}`,
        refreshToken: `rt-${serial}`,
        accessExpiresAt: now + 3_600_000,
        accessLifetimeMs: 3_600_000,
        refreshTokenUsedAt: now,
        nextRefreshAt: now + 3_000_000,
        now,
        ...overrides,
      };
    };
    const seed = (overrides: Partial<SaveConsentInput> = {}) => store.grants.saveConsent(consent(overrides));
    const event = (outcome: RefreshEvent['outcome'], extra: Partial<RefreshEvent> = {}): RefreshEvent => ({
      at: Date.now(),
      trigger: 'contract',
      outcome,
      ...extra,
    });
    const update = (n: string, refreshToken: string | null = `rt-${n}`) => {
      const now = Date.now();
      return {
        accessToken: `at-${n}`,
        ...(refreshToken === null ? {} : { refreshToken }),
        accessExpiresAt: now + 3_600_000,
        accessLifetimeMs: 3_600_000,
        refreshTokenUsedAt: now,
        nextRefreshAt: now + 3_000_000,
      };
    };
    /** A grant stopped by a refusal, as invalid_grant leaves it. */
    const stopped = async () => {
      const grant = await seed();
      expect(await store.grants.claim(grant.id, 0, 'killer', LEASE, GRACE)).toBeDefined();
      const failed = await store.grants.recordFailure(
        grant.id,
        0,
        'killer',
        { state: 'needs_reconsent', message: 'invalid_grant: spent' },
        event('needs_reconsent', { errorCode: 'invalid_grant' }),
      );
      expect(failed?.state).toBe('needs_reconsent');
      return grant;
    };

    describe('grants: consent, lookups, listings', () => {
      it('stores a consent and opens its tokens; finds it by id and by label', async () => {
        const input = consent({ subject: 'acct-1', scope: 'openid', tokenType: 'Bearer' });
        const grant = await store.grants.saveConsent(input);
        expect(grant).toMatchObject({
          clientRef,
          label: input.label,
          subject: 'acct-1',
          state: 'active',
          mode: 'eager',
          version: 0,
          scope: 'openid',
          consecutiveFailures: 0,
          leaseOwner: null,
          leaseSentAt: null,
          alertedState: null,
        });
        expect(grant).not.toHaveProperty('accessTokenSealed');
        const byId = await store.grants.get(grant.id);
        expect(byId?.grant).toEqual(grant);
        expect(byId?.tokens.accessToken()).toBe(input.accessToken);
        expect(byId?.tokens.refreshToken()).toBe(input.refreshToken);
        expect((await store.grants.find(input.label))?.grant.id).toBe(grant.id);
        expect((await store.grants.find(grant.id))?.grant.id).toBe(grant.id);
      });

      it('stores a grant without a refresh token: its kind and request kept, committed like any grant', async () => {
        const request = {
          scope: 'a b',
          resource: ['https://api.example/'],
          audience: 'aud',
          subject: 'u@x.test',
        };
        const plain = await seed();
        expect(plain).toMatchObject({ kind: 'authorization_code', tokenRequest: null });
        const grant = await seed({ kind: 'client_credentials', tokenRequest: request, refreshToken: '' });
        expect(grant).toMatchObject({ kind: 'client_credentials', tokenRequest: request });
        expect((await store.grants.get(grant.id))?.tokens.refreshToken()).toBe('');
        let seenKind: string | undefined;
        await store.grants.saveConsent(
          consent({ label: grant.label, kind: 'jwt_bearer', refreshToken: '' }),
          (existing) => {
            seenKind = existing.kind;
          },
        );
        expect(seenKind).toBe('client_credentials');
        const claimed = await store.grants.claim(grant.id, 1, 'cc-owner', LEASE, GRACE);
        expect(claimed?.grant).toMatchObject({ kind: 'jwt_bearer', tokenRequest: null });
        const committed = await store.grants.commitRefresh(
          grant.id,
          1,
          update('cc', null),
          event('refreshed'),
        );
        expect(committed?.grant).toMatchObject({ kind: 'jwt_bearer', version: 2 });
        expect(committed?.tokens.refreshToken()).toBe('');
        expect((await store.grants.list()).find((g) => g.id === grant.id)?.kind).toBe('jwt_bearer');
      });

      it('answers undefined for what does not exist', async () => {
        expect(await store.grants.get('g_nothing')).toBeUndefined();
        expect(await store.grants.find('@nobody')).toBeUndefined();
        expect(await store.grants.leaseView('g_nothing')).toBeUndefined();
        expect(await store.grants.reviveForRetry('g_nothing', Date.now())).toBeUndefined();
        expect(await store.grants.setMode('g_nothing', 'keepalive', Date.now(), Date.now())).toBeUndefined();
        expect(await store.grants.alertView('g_nothing')).toBeUndefined();
        expect(await store.grants.remove('g_nothing')).toBe(false);
      });

      it('re-consenting a label keeps its id, replaces its tokens, settles its lease and moves the version on', async () => {
        const first = await seed();
        await store.grants.claim(first.id, 0, 'holder', LEASE, GRACE);
        await store.grants.markSent(first.id, 0, 'holder', 0);
        const seen: unknown[] = [];
        const again = await store.grants.saveConsent(
          consent({ label: first.label, accessToken: 'at-new', refreshToken: 'rt-new' }),
          (existing) => seen.push(existing),
        );
        // Only what the check needs: never the sealed tokens.
        expect(seen).toEqual([
          { id: first.id, clientRef, subject: first.subject, kind: 'authorization_code' },
        ]);
        expect(again).toMatchObject({ id: first.id, version: 1, leaseOwner: null, leaseSentAt: null });
        expect((await store.grants.get(first.id))?.tokens.refreshToken()).toBe('rt-new');
      });

      it('a refusing mayReplace leaves the grant as it was', async () => {
        const first = await seed({ subject: 'acct-a' });
        await expect(
          store.grants.saveConsent(consent({ label: first.label, refreshToken: 'rt-intruder' }), () => {
            throw new Error('another account');
          }),
        ).rejects.toThrow('another account');
        const after = await store.grants.get(first.id);
        expect(after?.grant.version).toBe(0);
        expect(after?.tokens.refreshToken()).toBe(`rt-${first.label.slice('@contract-'.length)}`);
      });

      it('lists by label, by client, and only live grants due before the horizon', async () => {
        const due = await seed({ nextRefreshAt: Date.now() - 1000 });
        const later = await seed({ nextRefreshAt: Date.now() + 86_400_000 });
        const dead = await stopped();
        const labels = (await store.grants.list()).map((g) => g.label);
        expect(labels).toEqual([...labels].sort());
        expect(labels).toEqual(expect.arrayContaining([due.label, later.label, dead.label]));
        expect((await store.grants.listByClient(clientRef)).map((g) => g.id)).toContain(due.id);
        expect(await store.grants.listByClient('c_nothing')).toEqual([]);
        const schedulable = await store.grants.listSchedulable(Date.now() + 60_000, { limit: 10_000 });
        // With what a catch-up ranks it by (nearest access expiry, then oldest refresh-token use).
        expect(schedulable).toContainEqual({
          id: due.id,
          version: 0,
          nextRefreshAt: due.nextRefreshAt,
          clientRef,
          accessExpiresAt: due.accessExpiresAt,
          refreshTokenUsedAt: due.refreshTokenUsedAt,
        });
        expect(schedulable.map((g) => g.id)).not.toContain(later.id);
        expect(schedulable.map((g) => g.id)).not.toContain(dead.id);
      });

      it('pages due grants most urgent first, ties by id, none skipped or repeated', async () => {
        const base = Date.now() - 10 * 86_400_000;
        const ours = [];
        for (const offset of [3, 0, 1, 1, 2]) ours.push(await seed({ nextRefreshAt: base + offset }));
        const expected = ours
          .map((g) => ({
            id: g.id,
            version: 0,
            nextRefreshAt: g.nextRefreshAt,
            clientRef: g.clientRef,
            accessExpiresAt: g.accessExpiresAt,
            refreshTokenUsedAt: g.refreshTokenUsedAt,
          }))
          .sort((a, b) => a.nextRefreshAt - b.nextRefreshAt || (a.id < b.id ? -1 : 1));
        const seen = [];
        let after: { id: string; nextRefreshAt: number } | undefined;
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.grants.listSchedulable(base + 10, {
            limit: 2,
            ...(after ? { after } : {}),
          });
          expect(page.length).toBeLessThanOrEqual(2);
          if (page.length === 0) break;
          seen.push(...page);
          after = page[page.length - 1];
        }
        expect(seen).toEqual(expected);
      });
    });

    describe('grants: the lease (invariant 2)', () => {
      it('grants one lease per version; a wrong version or a second owner gets nothing', async () => {
        const grant = await seed();
        const held = await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE);
        expect(held?.grant.leaseOwner).toBe('a');
        expect(held?.tokens.refreshToken()).toBe(`rt-${grant.label.slice('@contract-'.length)}`);
        expect(await store.grants.claim(grant.id, 0, 'b', LEASE, GRACE)).toBeUndefined();
        expect(await store.grants.claim(grant.id, 1, 'c', LEASE, GRACE)).toBeUndefined();
      });

      it('lets an expired lease be taken over, measured on the store clock', async () => {
        const grant = await seed();
        expect(await store.grants.claim(grant.id, 0, 'a', 150, GRACE)).toBeDefined();
        const view = await store.grants.leaseView(grant.id);
        expect(view?.leaseRemainingMs).toBeGreaterThan(0);
        expect(view?.leaseRemainingMs).toBeLessThanOrEqual(150);
        expect(view?.sentAgoMs).toBeNull();
        await sleep(250);
        expect((await store.grants.leaseView(grant.id))?.leaseRemainingMs).toBeLessThan(0);
        expect((await store.grants.claim(grant.id, 0, 'b', LEASE, GRACE))?.grant.leaseOwner).toBe('b');
      });

      it('never leases a stopped grant', async () => {
        const grant = await stopped();
        expect(await store.grants.claim(grant.id, 0, 'a', LEASE, 0)).toBeUndefined();
      });

      it('fences a send: only the holder, at its version, with more than the minimum left', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE);
        expect(await store.grants.markSent(grant.id, 0, 'b', 0)).toBeUndefined();
        expect(await store.grants.markSent(grant.id, 1, 'a', 0)).toBeUndefined();
        expect(await store.grants.markSent(grant.id, 0, 'a', LEASE + 1000)).toBeUndefined();
        expect((await store.grants.leaseView(grant.id))?.sentAgoMs).toBeNull();
        const left = await store.grants.markSent(grant.id, 0, 'a', 1000);
        expect(left).toBeGreaterThan(1000);
        expect(left).toBeLessThanOrEqual(LEASE);
        const view = await store.grants.leaseView(grant.id);
        expect(view?.sentAgoMs).toBeGreaterThanOrEqual(0);
        expect(view?.grant.leaseSentAt).not.toBeNull();
      });

      it('keeps a grant whose answer was lost in doubt until the grace has passed, and counts it', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', 100, GRACE);
        await store.grants.markSent(grant.id, 0, 'a', 0);
        await sleep(200);
        const before = (await store.grants.fleetStats()).inDoubt;
        expect(before).toBeGreaterThanOrEqual(1);
        expect(await store.grants.claim(grant.id, 0, 'b', LEASE, GRACE)).toBeUndefined();
        const taken = await store.grants.claim(grant.id, 0, 'b', LEASE, 50);
        expect(taken?.grant.leaseOwner).toBe('b');
        // Still in doubt for the new holder: only an answer settles the earlier send.
        expect(taken?.grant.leaseSentAt).toBe(grant.leaseSentAt ?? taken?.grant.leaseSentAt);
        expect(taken?.grant.leaseSentAt).not.toBeNull();
        const candidates = await store.grants.listAlertCandidates();
        expect(candidates.map((c) => c.id)).toContain(grant.id);
      });

      it('gives a lease back only to its owner, leaving the in-doubt mark the caller names', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE);
        await store.grants.releaseLease(grant.id, 'b', null);
        expect((await store.grants.leaseView(grant.id))?.grant.leaseOwner).toBe('a');
        await store.grants.releaseLease(grant.id, 'a', 1234);
        const view = await store.grants.leaseView(grant.id);
        expect(view?.grant).toMatchObject({ leaseOwner: null, leaseUntil: null, leaseSentAt: 1234 });
        expect(view?.leaseRemainingMs).toBeNull();
      });

      it('extends only its owner’s lease', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', 200, GRACE);
        expect(await store.grants.extendLease(grant.id, 0, 'b', LEASE)).toBe(false);
        expect(await store.grants.extendLease(grant.id, 1, 'a', LEASE)).toBe(false);
        expect(await store.grants.extendLease(grant.id, 0, 'a', LEASE)).toBe(true);
        expect((await store.grants.leaseView(grant.id))?.leaseRemainingMs).toBeGreaterThan(200);
      });
    });

    describe('grants: commits (invariant 3)', () => {
      it('commits at the claimed version: new tokens, failures cleared, lease and doubt settled, one event', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE);
        await store.grants.markSent(grant.id, 0, 'a', 0);
        const result = await store.grants.commitRefresh(
          grant.id,
          0,
          update('v1'),
          event('refreshed', { rotated: true, durationMs: 12, httpStatus: 200 }),
        );
        expect(result?.conflict).toBe(false);
        expect(result?.grant).toMatchObject({
          version: 1,
          state: 'active',
          consecutiveFailures: 0,
          lastError: null,
          leaseOwner: null,
          leaseSentAt: null,
        });
        expect(result?.grant.lastRefreshedAt).not.toBeNull();
        expect(result?.tokens.accessToken()).toBe('at-v1');
        expect((await store.grants.get(grant.id))?.tokens.refreshToken()).toBe('rt-v1');
        const [recorded] = await store.grants.recentEvents(grant.id, 5);
        expect(recorded).toMatchObject({
          grantId: grant.id,
          version: 0,
          outcome: 'refreshed',
          trigger: 'contract',
          durationMs: 12,
          httpStatus: 200,
        });
        expect(Boolean(recorded?.rotated)).toBe(true);
      });

      it('keeps the stored refresh token when the answer carried none', async () => {
        const grant = await seed();
        await store.grants.commitRefresh(grant.id, 0, update('v1', null), event('refreshed'));
        const after = await store.grants.get(grant.id);
        expect(after?.tokens.accessToken()).toBe('at-v1');
        expect(after?.tokens.refreshToken()).toBe(`rt-${grant.label.slice('@contract-'.length)}`);
      });

      it("keeps a refresh token's hard end across commits that state none; a stated one replaces it, a re-consent clears it", async () => {
        const end = { at: Date.now() + 7 * 86_400_000, reason: 'Google apps in Testing status' };
        const grant = await seed({ refreshExpires: end });
        expect(grant).toMatchObject({ refreshExpiresAt: end.at, refreshExpiresReason: end.reason });
        const kept = await store.grants.commitRefresh(grant.id, 0, update('e1'), event('refreshed'));
        expect(kept?.grant).toMatchObject({ refreshExpiresAt: end.at, refreshExpiresReason: end.reason });
        const stated = { at: end.at + 1000, reason: 'refresh_token_expires_in' };
        const moved = await store.grants.commitRefresh(
          grant.id,
          1,
          { ...update('e2'), refreshExpires: stated },
          event('refreshed'),
        );
        expect(moved?.grant).toMatchObject({
          refreshExpiresAt: stated.at,
          refreshExpiresReason: stated.reason,
        });
        expect((await store.grants.get(grant.id))?.grant.refreshExpiresAt).toBe(stated.at);
        const reconsented = await store.grants.saveConsent(consent({ label: grant.label }));
        expect(reconsented).toMatchObject({
          id: grant.id,
          refreshExpiresAt: null,
          refreshExpiresReason: null,
        });
      });

      it('lists live refresh-token grants whose hard end or idle deadline falls before the cutoff, by id', async () => {
        const now = Date.now();
        const day = 86_400_000;
        const hard = await seed({
          refreshExpires: { at: now + 3 * day, reason: 'refresh_token_expires_in' },
        });
        const idle = await seed({ refreshTokenUsedAt: now - 25 * day });
        const healthy = await seed({
          refreshExpires: { at: now + 60 * day, reason: 'refresh_token_expires_in' },
        });
        const service = await seed({
          kind: 'client_credentials',
          refreshToken: '',
          refreshTokenUsedAt: now - 99 * day,
        });
        const dead = await stopped();
        await store.grants.commitRefresh(
          dead.id,
          1,
          { ...update('dead'), refreshExpires: { at: now + day, reason: 'x' } },
          event('refreshed'),
        );
        const query = { before: now + 7 * day, idleLimits: [{ clientRef, limitMs: 30 * day }] };
        const found = await store.grants.listExpiring(query);
        const ids = found.map((g) => g.id);
        expect(ids).toEqual([...ids].sort());
        expect(ids).toContain(hard.id);
        expect(ids).toContain(idle.id);
        for (const left of [healthy, service, dead]) expect(ids).not.toContain(left.id);
        expect(found.find((g) => g.id === hard.id)).toEqual({
          id: hard.id,
          label: hard.label,
          clientRef,
          state: 'active',
          kind: 'authorization_code',
          refreshTokenUsedAt: hard.refreshTokenUsedAt,
          refreshExpiresAt: now + 3 * day,
          refreshExpiresReason: 'refresh_token_expires_in',
        });
        // A client not named has no idle limit: only hard ends count for it.
        const noIdle = (await store.grants.listExpiring({ before: query.before, idleLimits: [] })).map(
          (g) => g.id,
        );
        expect(noIdle).toContain(hard.id);
        expect(noIdle).not.toContain(idle.id);
      });

      it('writes nothing for a version that moved on', async () => {
        const grant = await seed();
        await store.grants.commitRefresh(grant.id, 0, update('v1'), event('refreshed'));
        expect(
          await store.grants.commitRefresh(grant.id, 0, update('late'), event('refreshed')),
        ).toBeUndefined();
        const after = await store.grants.get(grant.id);
        expect(after?.grant.version).toBe(1);
        expect(after?.tokens.accessToken()).toBe('at-v1');
        expect((await store.grants.recentEvents(grant.id, 10)).length).toBe(1);
      });

      it('stores a late answer for a stopped grant without reviving it, as a conflict', async () => {
        const grant = await stopped();
        const result = await store.grants.commitRefresh(grant.id, 0, update('late'), event('refreshed'));
        expect(result?.conflict).toBe(true);
        expect(result?.grant).toMatchObject({ state: 'needs_reconsent', version: 1 });
        expect(result?.grant.lastError).toContain('invalid_grant');
        expect((await store.grants.get(grant.id))?.tokens.refreshToken()).toBe('rt-late');
        expect((await store.grants.recentEvents(grant.id, 1))[0]?.outcome).toBe('conflict');
      });

      it('stores a salvaged refresh token and the failure in one step, for the lease holder only', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE);
        const args = [
          { refreshToken: 'rt-salvaged', refreshTokenUsedAt: Date.now() },
          { nextRefreshAt: Date.now() + 5000, message: 'unusable access token' },
          event('transient_error', { errorCode: 'unusable' }),
        ] as const;
        expect(await store.grants.commitRotationOnly(grant.id, 0, 'b', ...args)).toBeUndefined();
        const after = await store.grants.commitRotationOnly(grant.id, 0, 'a', ...args);
        expect(after).toMatchObject({
          version: 1,
          state: 'failing',
          consecutiveFailures: 1,
          lastError: 'unusable access token',
          leaseOwner: null,
        });
        expect((await store.grants.get(grant.id))?.tokens.refreshToken()).toBe('rt-salvaged');
        expect((await store.grants.recentEvents(grant.id, 5)).map((e) => e.errorCode)).toEqual(['unusable']);
      });

      it('records a failure only for the lease holder, releasing the lease; a lost answer stays in doubt', async () => {
        const grant = await seed();
        await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE);
        await store.grants.markSent(grant.id, 0, 'a', 0);
        const failure = { state: 'failing' as const, nextRefreshAt: Date.now() + 30_000, message: 'timeout' };
        expect(
          await store.grants.recordFailure(grant.id, 0, 'b', failure, event('transient_error')),
        ).toBeUndefined();
        const lost = await store.grants.recordFailure(
          grant.id,
          0,
          'a',
          { ...failure, inDoubt: true },
          event('in_doubt'),
        );
        expect(lost).toMatchObject({
          state: 'failing',
          consecutiveFailures: 1,
          lastError: 'timeout',
          leaseOwner: null,
        });
        expect(lost?.leaseSentAt).not.toBeNull();
        expect(lost?.nextRefreshAt).toBe(failure.nextRefreshAt);

        // The grace is measured from the send on the store's clock, to the millisecond.
        await sleep(5);
        expect(await store.grants.claim(grant.id, 0, 'c', LEASE, 0)).toBeDefined();
        const answered = await store.grants.recordFailure(
          grant.id,
          0,
          'c',
          failure,
          event('transient_error'),
        );
        expect(answered).toMatchObject({ consecutiveFailures: 2, leaseSentAt: null });
        expect((await store.grants.recentEvents(grant.id, 10)).map((e) => e.outcome)).toEqual([
          'transient_error',
          'in_doubt',
        ]);
      });

      it('records history without touching the grant, newest first, as many as asked', async () => {
        const grant = await seed();
        for (const outcome of ['overtaken', 'refreshed', 'transient_error'] as const) {
          await store.grants.recordEvent(grant.id, 0, event(outcome));
        }
        expect((await store.grants.recentEvents(grant.id, 2)).map((e) => e.outcome)).toEqual([
          'transient_error',
          'refreshed',
        ]);
        expect((await store.grants.get(grant.id))?.grant).toEqual(grant);
      });
    });

    describe('grants: faults under a commit', () => {
      it('an event that cannot be written undoes its commit, failure record and salvage: nothing half-written', async () => {
        const grant = await seed();
        const n = grant.label.slice('@contract-'.length);
        expect(await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE)).toBeDefined();
        const undo = await subject.failEventInserts();
        try {
          await expect(
            store.grants.commitRefresh(grant.id, 0, update('x'), event('refreshed')),
          ).rejects.toThrow();
          await expect(
            store.grants.recordFailure(
              grant.id,
              0,
              'a',
              { state: 'failing', message: 'm' },
              event('transient_error'),
            ),
          ).rejects.toThrow();
          await expect(
            store.grants.commitRotationOnly(
              grant.id,
              0,
              'a',
              { refreshToken: 'rt-salvaged', refreshTokenUsedAt: Date.now() },
              { nextRefreshAt: Date.now(), message: 'm' },
              event('transient_error'),
            ),
          ).rejects.toThrow();
        } finally {
          await undo();
        }
        const after = await store.grants.get(grant.id);
        expect(after?.grant).toMatchObject({
          version: 0,
          leaseOwner: 'a',
          consecutiveFailures: 0,
          state: 'active',
        });
        expect(after?.tokens.accessToken()).toBe(`at-${n}`);
        expect(after?.tokens.refreshToken()).toBe(`rt-${n}`);
        expect(await store.grants.recentEvents(grant.id, 5)).toEqual([]);
        const committed = await store.grants.commitRefresh(grant.id, 0, update('y'), event('refreshed'));
        expect(committed?.grant.version).toBe(1);
        expect(await store.grants.recentEvents(grant.id, 5)).toHaveLength(1);
      });

      it('commits that arrive together stand or fall one by one: one whose event cannot be written is undone, the others land', async () => {
        const grants = await Promise.all(Array.from({ length: 6 }, () => seed()));
        for (const g of grants) expect(await store.grants.claim(g.id, 0, 'a', LEASE, GRACE)).toBeDefined();
        const failing = grants[2]?.id as string;
        const undo = await subject.failEventInserts(failing);
        let outcomes: PromiseSettledResult<unknown>[];
        try {
          outcomes = await Promise.allSettled(
            grants.map((g) =>
              store.grants.commitRefresh(g.id, 0, update(`together-${g.id}`), event('refreshed')),
            ),
          );
        } finally {
          await undo();
        }
        for (const [i, g] of grants.entries()) {
          const after = await store.grants.get(g.id);
          if (g.id === failing) {
            expect(outcomes[i]?.status).toBe('rejected');
            expect(after?.grant).toMatchObject({ version: 0, leaseOwner: 'a' });
            expect(await store.grants.recentEvents(g.id, 5)).toEqual([]);
          } else {
            expect(outcomes[i]?.status).toBe('fulfilled');
            expect(after?.grant.version).toBe(1);
            expect(after?.tokens.refreshToken()).toBe(`rt-together-${g.id}`);
            expect(await store.grants.recentEvents(g.id, 5)).toHaveLength(1);
          }
        }
      });

      it('a commit refused while another writer holds the lock is a StorageError that changed nothing, and lands once retried', async () => {
        const grant = await seed();
        expect(await store.grants.claim(grant.id, 0, 'a', LEASE, GRACE)).toBeDefined();
        const release = await subject.holdWriteLock();
        let refused: unknown;
        try {
          refused = await store.grants
            .commitRefresh(grant.id, 0, update('held'), event('refreshed'))
            .catch((e) => e);
        } finally {
          await release();
        }
        expect(refused).toBeInstanceOf(StorageError);
        expect((refused as StorageError).failure).toBe('locked');
        expect((await store.grants.get(grant.id))?.grant.version).toBe(0);
        // What the held-commit path does next: the same write again, which now lands.
        const landed = await store.grants.commitRefresh(grant.id, 0, update('held'), event('refreshed'));
        expect(landed?.tokens.refreshToken()).toBe('rt-held');
      });
    });

    describe('grants: operator changes', () => {
      it('revives a stopped grant as failing, due now, at the same version', async () => {
        const grant = await stopped();
        const now = Date.now();
        const revived = await store.grants.reviveForRetry(grant.id, now);
        expect(revived).toMatchObject({ state: 'failing', nextRefreshAt: now, version: 0 });
        const live = await seed();
        expect((await store.grants.reviveForRetry(live.id, now))?.state).toBe('active');
      });

      it('switches the mode and replans without moving the version', async () => {
        const grant = await seed();
        const at = Date.now() + 86_400_000;
        expect(await store.grants.setMode(grant.id, 'keepalive', at, Date.now())).toMatchObject({
          mode: 'keepalive',
          nextRefreshAt: at,
          version: 0,
        });
      });

      it('removes a grant with its events', async () => {
        const grant = await seed();
        await store.grants.recordEvent(grant.id, 0, event('refreshed'));
        expect(await store.grants.remove(grant.id)).toBe(true);
        expect(await store.grants.get(grant.id)).toBeUndefined();
        expect(await store.grants.recentEvents(grant.id, 5)).toEqual([]);
        expect(await store.grants.remove(grant.id)).toBe(false);
      });
    });

    describe('grants: the page listing and the fleet summary', () => {
      const HOUR = 3_600_000;
      let pageClient: string;
      const seedOn = (label: string, overrides: Partial<SaveConsentInput> = {}) =>
        seed({ clientRef: pageClient, label, ...overrides });
      const stop = async (id: string) => {
        await store.grants.claim(id, 0, 'stopper', LEASE, GRACE);
        await store.grants.recordFailure(
          id,
          0,
          'stopper',
          { state: 'needs_reconsent', message: 'invalid_grant' },
          event('needs_reconsent'),
        );
      };

      beforeAll(async () => {
        pageClient = (
          await store.clients.upsert({
            name: 'contract-page',
            profile: testProfile('https://page.example/token'),
            clientId: 'page-id',
            authMethod: 'none',
            scopes: ['openid'],
            now: Date.now(),
          })
        ).id;
      });

      it('pages by label then id, filtered in the query by label, client, state and a reader’s grants', async () => {
        const made = [];
        for (const label of ['@Pg-delta', '@pg-alpha', '@pg_x', '@pgax', '@pg-charlie', '@pg-bravo']) {
          made.push(await seedOn(label));
        }
        const byLabel = new Map(made.map((g) => [g.label, g]));
        await stop(byLabel.get('@pg-charlie')!.id);
        const all = { grantIds: null, clientRef: pageClient };
        const labels = async (filter: Parameters<typeof store.grants.page>[0], limit = 100) =>
          (await store.grants.page(filter, { limit })).map((g) => g.label);

        expect(await labels(all)).toEqual([...made.map((g) => g.label)].sort());
        // Case-insensitive, and LIKE's wildcards in the text are literal.
        expect(await labels({ ...all, labelContains: 'PG-D' })).toEqual(['@Pg-delta']);
        expect(await labels({ ...all, labelContains: '_x' })).toEqual(['@pg_x']);
        expect(await labels({ ...all, labelContains: '%' })).toEqual([]);
        expect(await labels({ ...all, state: 'needs_reconsent' })).toEqual(['@pg-charlie']);
        expect(await labels({ grantIds: null, clientRef: 'c_nothing' })).toEqual([]);
        const reader = [byLabel.get('@pg-bravo')!.id, byLabel.get('@pgax')!.id, 'g_gone'];
        expect(await labels({ grantIds: reader })).toEqual(['@pg-bravo', '@pgax']);
        expect(await labels({ grantIds: [] })).toEqual([]);

        // Pages of two, each after the last one seen: none skipped or repeated.
        const seen: string[] = [];
        let after: { label: string; id: string } | undefined;
        for (let pages = 0; pages < 10; pages++) {
          const page = await store.grants.page(all, { limit: 2, ...(after ? { after } : {}) });
          expect(page.length).toBeLessThanOrEqual(2);
          if (page.length === 0) break;
          seen.push(...page.map((g) => g.label));
          after = page[page.length - 1];
        }
        expect(seen).toEqual(await labels(all));
      });

      it('loads the newest events of many grants in one call, grouped in the order asked', async () => {
        const first = await seedOn('@events-1');
        const second = await seedOn('@events-2');
        for (const outcome of ['refreshed', 'transient_error', 'in_doubt'] as const) {
          await store.grants.recordEvent(first.id, 0, event(outcome, { durationMs: 5, rotated: true }));
          await store.grants.recordEvent(second.id, 0, event(outcome));
        }
        const events = await store.grants.recentEventsOf([second.id, 'g_nothing', first.id], 2);
        expect(events.map((e) => [e.grantId, e.outcome])).toEqual([
          [second.id, 'in_doubt'],
          [second.id, 'transient_error'],
          [first.id, 'in_doubt'],
          [first.id, 'transient_error'],
        ]);
        // The same rows recentEvents gives, field for field.
        expect(events.slice(2)).toEqual(await store.grants.recentEvents(first.id, 2));
        expect(await store.grants.recentEventsOf([], 5)).toEqual([]);
      });

      it('summarises only the grants it covers: counts, planned refreshes, deadlines, outcomes and latency', async () => {
        const now = Date.now();
        const aheadFrom = now - (now % HOUR);
        const behindFrom = aheadFrom - 23 * HOUR;
        const week = 7 * 24 * HOUR;
        const interval = 2 * 24 * HOUR;
        const grant = (label: string, nextRefreshAt: number, refreshTokenUsedAt = now) =>
          seedOn(label, { nextRefreshAt, refreshTokenUsedAt });
        // Planned: one overdue, two in bucket 1, one in bucket 5, one past the day.
        const overdue = await grant('@sum-overdue', aheadFrom - 5 * HOUR);
        const soonA = await grant('@sum-soon-a', aheadFrom + HOUR + 1);
        // Its keep-alive deadline is in bucket 3 (used 45 h before the hour began).
        const soonB = await grant(
          '@sum-soon-b',
          aheadFrom + 2 * HOUR - 1,
          aheadFrom - interval + 3 * HOUR + 10,
        );
        const later = await grant('@sum-later', aheadFrom + 5 * HOUR);
        const far = await grant('@sum-far', aheadFrom + 30 * HOUR, aheadFrom - interval + 3 * 24 * HOUR);
        // Its refresh token sat unused past the interval: a passed deadline.
        const idle = await grant('@sum-idle', aheadFrom + 30 * HOUR, aheadFrom - interval - HOUR);
        const dead = await grant('@sum-dead', aheadFrom + HOUR);
        await stop(dead.id);
        const outside = await grant('@sum-outside', aheadFrom + HOUR);
        // Outcomes: two refreshes an hour ago (10 ms and 30 ms), one error now, one event too old.
        const at = (t: number, outcome: RefreshEvent['outcome'], durationMs: number | null) =>
          store.grants.recordEvent(soonA.id, 0, event(outcome, { at: t, durationMs }));
        await at(aheadFrom - HOUR + 5, 'refreshed', 10);
        await at(aheadFrom - HOUR + 6, 'refreshed', 30);
        await at(aheadFrom + 1, 'transient_error', null);
        await at(behindFrom - 1, 'refreshed', 99);
        await store.grants.recordEvent(
          outside.id,
          0,
          event('refreshed', { at: aheadFrom + 1, durationMs: 1 }),
        );

        const covered = [overdue, soonA, soonB, later, far, idle, dead].map((g) => g.id);
        const summary = await store.grants.fleetSummary({
          grantIds: covered,
          aheadFrom,
          behindFrom,
          bucketMs: HOUR,
          buckets: 24,
          keepAlive: [
            { clientRef: pageClient, intervalMs: interval },
            { clientRef, intervalMs: 1 },
          ],
          deadlineHorizonMs: week,
        });
        expect(summary.counts.sort((a, b) => a.state.localeCompare(b.state))).toEqual([
          { clientRef: pageClient, state: 'active', count: 6 },
          { clientRef: pageClient, state: 'needs_reconsent', count: 1 },
        ]);
        expect(summary.overdue).toBe(1);
        expect(summary.planned.sort((a, b) => a.bucket - b.bucket)).toEqual([
          { bucket: 1, count: 2 },
          { bucket: 5, count: 1 },
        ]);
        // Deadlines: soonB in bucket 3, idle passed, far on day 3 and the others in two days (within the week).
        expect(summary.deadlines).toEqual([{ bucket: 3, count: 1 }]);
        expect(summary.deadlinesPassed).toBe(1);
        expect(summary.deadlinesWithinHorizon).toBe(6);
        const outcomes = summary.outcomes.sort(
          (a, b) => a.bucket - b.bucket || a.outcome.localeCompare(b.outcome),
        );
        expect(outcomes).toEqual([
          {
            clientRef: pageClient,
            bucket: 22,
            outcome: 'refreshed',
            count: 2,
            timed: 2,
            totalDurationMs: 40,
            maxDurationMs: 30,
          },
          // The refusal that stopped @sum-dead.
          {
            clientRef: pageClient,
            bucket: 23,
            outcome: 'needs_reconsent',
            count: 1,
            timed: 0,
            totalDurationMs: 0,
            maxDurationMs: null,
          },
          {
            clientRef: pageClient,
            bucket: 23,
            outcome: 'transient_error',
            count: 1,
            timed: 0,
            totalDurationMs: 0,
            maxDurationMs: null,
          },
        ]);

        const nothing = await store.grants.fleetSummary({
          grantIds: [],
          aheadFrom,
          behindFrom,
          bucketMs: HOUR,
          buckets: 24,
          keepAlive: [],
          deadlineHorizonMs: week,
        });
        expect(nothing).toEqual({
          counts: [],
          overdue: 0,
          planned: [],
          deadlines: [],
          deadlinesPassed: 0,
          deadlinesWithinHorizon: 0,
          outcomes: [],
        });
      });
    });

    describe('grants: fleet and alerts', () => {
      it('aggregates states, the earliest eager expiry and the oldest use per client', async () => {
        const early = await seed({ accessExpiresAt: Date.now() + 1000, refreshTokenUsedAt: 1000 });
        await stopped();
        const stats = await store.grants.fleetStats();
        const total = (await store.grants.list()).length;
        expect(stats.byState.reduce((n, s) => n + s.count, 0)).toBe(total);
        expect(stats.byState.find((s) => s.state === 'needs_reconsent')?.count).toBeGreaterThanOrEqual(1);
        expect(stats.earliestEagerExpiry).toBe(early.accessExpiresAt);
        expect(stats.oldestUseByClient).toContainEqual({ clientRef, usedAt: 1000 });
      });

      it('alerts each transition once: markAlerted is a compare-and-swap', async () => {
        const grant = await stopped();
        expect((await store.grants.listAlertCandidates()).map((c) => c.id)).toContain(grant.id);
        expect(await store.grants.markAlerted(grant.id, null, 'needs_reconsent')).toBe(true);
        expect(await store.grants.markAlerted(grant.id, null, 'needs_reconsent')).toBe(false);
        expect(await store.grants.alertView(grant.id)).toMatchObject({
          id: grant.id,
          state: 'needs_reconsent',
          alertedState: 'needs_reconsent',
        });
        expect(await store.grants.markAlerted(grant.id, 'needs_reconsent', null)).toBe(true);
        const quiet = await seed();
        expect((await store.grants.listAlertCandidates()).map((c) => c.id)).not.toContain(quiet.id);
      });
    });

    describe('clients', () => {
      it('adds a client, updates it in place by name, and opens its secret only on request', async () => {
        const input = {
          name: 'contract-c2',
          profile: testProfile('https://id.example/token'),
          clientId: 'c2',
          clientSecret: 'c2-secret',
          authMethod: 'client_secret_post' as const,
          scopes: ['openid'],
          redirectUri: 'http://127.0.0.1/callback',
          authorizeParams: { login_hint: 'a@example.com' },
          now: Date.now(),
        };
        const added = await store.clients.upsert(input);
        expect(added).toMatchObject({ name: 'contract-c2', hasSecret: true, scopes: ['openid'] });
        expect(added).not.toHaveProperty('clientSecret');
        const updated = await store.clients.upsert({
          ...input,
          scopes: ['openid', 'email'],
          now: Date.now(),
        });
        expect(updated.id).toBe(added.id);
        expect((await store.clients.get(added.id))?.scopes).toEqual(['openid', 'email']);
        expect((await store.clients.findByName('contract-c2'))?.authorizeParams).toEqual({
          login_hint: 'a@example.com',
        });
        const opened = await store.clients.openById(added.id);
        expect(opened?.target).toMatchObject({
          clientId: 'c2',
          clientSecret: 'c2-secret',
          authMethod: 'client_secret_post',
        });
        expect(opened?.redirectUri).toBe('http://127.0.0.1/callback');
        const names = (await store.clients.list()).map((c) => c.name);
        expect(names).toEqual([...names].sort());
        expect(await store.clients.get('c_nothing')).toBeUndefined();
        expect(await store.clients.openById('c_nothing')).toBeUndefined();
        expect(await store.clients.findByName('nothing')).toBeUndefined();
      });

      it('keeps a client that still has grants unless asked to remove them with it', async () => {
        const own = await store.clients.upsert({
          name: 'contract-c3',
          profile: testProfile('https://id.example/token'),
          clientId: 'c3',
          authMethod: 'none',
          scopes: ['openid'],
          now: Date.now(),
        });
        expect(own.hasSecret).toBe(false);
        const grant = await seed({ clientRef: own.id });
        expect(await store.clients.remove(own.id, { withGrants: false })).toBeUndefined();
        expect(await store.clients.get(own.id)).toBeDefined();
        expect(await store.clients.remove(own.id, { withGrants: true })).toEqual({
          grantLabels: [grant.label],
        });
        expect(await store.grants.get(grant.id)).toBeUndefined();
        expect(await store.clients.remove(own.id, { withGrants: true })).toBeUndefined();
      });

      it('two processes registering one new client at once end with one client, neither failing', async () => {
        const input = {
          name: 'contract-raced',
          profile: testProfile('https://id.example/token'),
          clientId: 'c5',
          clientSecret: 'raced-secret',
          authMethod: 'client_secret_basic' as const,
          scopes: ['openid'],
          now: Date.now(),
        };
        const other = await subject.open(sealer);
        try {
          // As two replicas starting at once sync the same config-file client.
          const [a, b] = await Promise.all([store.clients.upsert(input), other.clients.upsert(input)]);
          expect(a.id).toBe(b.id);
        } finally {
          await other.admin.close();
        }
        const named = (await store.clients.list()).filter((c) => c.name === 'contract-raced');
        expect(named).toHaveLength(1);
        expect((await store.clients.openById(named[0]?.id ?? ''))?.target.clientSecret).toBe('raced-secret');
      });

      it('seals a private key to its client and opens it, with its public facts, for a token request', async () => {
        const input = {
          name: 'contract-keyed',
          profile: testProfile('https://id.example/token', { issuer: 'https://id.example' }),
          clientId: 'c6',
          privateKey: {
            pem: PRIVATE_KEY_PEM,
            alg: 'ES256' as const,
            keyId: 'k6',
            audience: 'issuer' as const,
          },
          authMethod: 'private_key_jwt' as const,
          scopes: [],
          now: Date.now(),
        };
        const added = await store.clients.upsert(input);
        expect(added).toMatchObject({ hasSecret: false, authMethod: 'private_key_jwt' });
        expect(added.signingKey).toEqual({ alg: 'ES256', keyId: 'k6', audience: 'issuer' });
        expect((await store.clients.openById(added.id))?.target).toMatchObject({
          authMethod: 'private_key_jwt',
          signingKey: {
            privateKeyPem: PRIVATE_KEY_PEM,
            alg: 'ES256',
            keyId: 'k6',
            audience: 'https://id.example',
          },
        });
        // A new key registered by another process is the one the next request signs with.
        const other = await subject.open(sealer);
        try {
          await other.clients.upsert({
            ...input,
            privateKey: { ...input.privateKey, pem: 'NEW-PEM', keyId: 'k7' },
            now: input.now + 1,
          });
        } finally {
          await other.admin.close();
        }
        expect((await store.clients.openById(added.id))?.target.signingKey).toMatchObject({
          privateKeyPem: 'NEW-PEM',
          keyId: 'k7',
        });
        // Registered again with a secret instead, the key is gone.
        await store.clients.upsert({
          ...input,
          privateKey: undefined,
          clientSecret: 's',
          authMethod: 'client_secret_basic',
          now: input.now + 2,
        });
        expect((await store.clients.get(added.id))?.signingKey).toBeNull();
        expect((await store.clients.openById(added.id))?.target.signingKey).toBeUndefined();
        await store.clients.upsert({ ...input, now: input.now + 3 });
      });

      it('a secret rotated by another process is the one the next token request uses', async () => {
        const input = {
          name: 'contract-rotated',
          profile: testProfile('https://id.example/token'),
          clientId: 'c4',
          clientSecret: 'old-secret',
          authMethod: 'client_secret_basic' as const,
          scopes: ['openid'],
          now: Date.now(),
        };
        const { id } = await store.clients.upsert(input);
        expect((await store.clients.openById(id))?.target.clientSecret).toBe('old-secret');
        const other = await subject.open(sealer);
        try {
          await other.clients.upsert({ ...input, clientSecret: 'new-secret', now: input.now + 1 });
        } finally {
          await other.admin.close();
        }
        expect((await store.clients.openById(id))?.target.clientSecret).toBe('new-secret');
      });
    });

    describe('clients: the secret lifecycle', () => {
      const lifecycleClient = (name: string, extra: Record<string, unknown> = {}) =>
        store.clients.upsert({
          name,
          profile: testProfile('https://id.example/token'),
          clientId: `${name}-id`,
          clientSecret: 'first-secret',
          secretExpiresAt: 1_900_000_000_000,
          authMethod: 'client_secret_post',
          scopes: ['openid'],
          now: Date.now(),
          ...extra,
        });

      it('rotates: the new secret is current, the old one the fallback, one fallback at a time', async () => {
        const added = await lifecycleClient('contract-lifecycle');
        expect(added.secret).toEqual({
          expiresAt: 1_900_000_000_000,
          previous: null,
          inUse: null,
          inUseAt: null,
        });
        expect((await store.clients.openById(added.id))?.target.fallbackClientSecret).toBeUndefined();
        const rotated = await store.clients.rotateSecret(added.id, {
          secret: 'second-secret',
          expiresAt: 1_950_000_000_000,
          now: Date.now() + 1,
        });
        expect(rotated?.secret).toEqual({
          expiresAt: 1_950_000_000_000,
          previous: { expiresAt: 1_900_000_000_000 },
          inUse: null,
          inUseAt: null,
        });
        const opened = await store.clients.openById(added.id);
        expect(opened?.target).toMatchObject({
          clientSecret: 'second-secret',
          fallbackClientSecret: 'first-secret',
        });
        expect(
          await store.clients.rotateSecret(added.id, {
            secret: 'third',
            expiresAt: null,
            now: Date.now() + 2,
          }),
        ).toBeUndefined();
        expect((await store.clients.openById(added.id))?.target.clientSecret).toBe('second-secret');
        expect(
          await store.clients.rotateSecret('c_missing', { secret: 's', expiresAt: null, now: 1 }),
        ).toBeUndefined();
        const publicOne = await lifecycleClient('contract-public', {
          clientSecret: undefined,
          authMethod: 'none',
        });
        expect(
          await store.clients.rotateSecret(publicOne.id, { secret: 's', expiresAt: null, now: 1 }),
        ).toBeUndefined();
      });

      it('records which secret worked, seen by the next open; retiring drops the fallback once', async () => {
        const { id } = (await store.clients.findByName('contract-lifecycle')) ?? { id: '' };
        expect((await store.clients.openById(id))?.secretInUse).toBeNull();
        await store.clients.recordSecretInUse(id, 'previous', 1_800_000_000_000);
        expect((await store.clients.get(id))?.secret).toMatchObject({
          inUse: 'previous',
          inUseAt: 1_800_000_000_000,
        });
        expect((await store.clients.openById(id))?.secretInUse).toBe('previous');
        const retired = await store.clients.retireSecret(id, Date.now() + 5);
        expect(retired?.secret).toEqual({
          expiresAt: 1_950_000_000_000,
          previous: null,
          inUse: null,
          inUseAt: null,
        });
        const opened = await store.clients.openById(id);
        expect(opened?.target.clientSecret).toBe('second-secret');
        expect(opened?.target.fallbackClientSecret).toBeUndefined();
        expect(await store.clients.retireSecret(id, Date.now() + 6)).toBeUndefined();
      });
    });

    describe('API keys and sessions', () => {
      it('stores keys by hash, with their role, and finds them every way', async () => {
        const now = Date.now();
        const admin = await store.apiKeys.create({
          name: 'contract-admin',
          keyHash: 'aa'.repeat(32),
          role: 'admin',
          now,
        });
        const reader = await store.apiKeys.create({
          name: 'contract-reader',
          keyHash: 'bb'.repeat(32),
          role: 'reader',
          grantIds: ['g_1', 'g_2'],
          now,
        });
        expect(admin).toMatchObject({ role: 'admin', grantIds: null, lastUsedAt: null });
        expect(reader).toMatchObject({ role: 'reader', grantIds: ['g_1', 'g_2'] });
        await expect(
          store.apiKeys.create({ name: 'contract-admin', keyHash: 'cc'.repeat(32), role: 'admin', now }),
        ).rejects.toThrow(/already exists/);
        expect((await store.apiKeys.findByName('contract-reader'))?.id).toBe(reader.id);
        expect((await store.apiKeys.findById(admin.id))?.name).toBe('contract-admin');
        expect(await store.apiKeys.findByHash('bb'.repeat(32))).toMatchObject({
          id: reader.id,
          keyHash: 'bb'.repeat(32),
        });
        expect(await store.apiKeys.findByHash('dd'.repeat(32))).toBeUndefined();
        expect((await store.apiKeys.list()).map((k) => k.name)).toEqual([
          'contract-admin',
          'contract-reader',
        ]);
        expect(await store.apiKeys.list()).not.toContainEqual(
          expect.objectContaining({ keyHash: expect.anything() }),
        );
        expect((await store.apiKeys.listWithHashes()).map((k) => k.keyHash)).toEqual([
          'aa'.repeat(32),
          'bb'.repeat(32),
        ]);
        await store.apiKeys.touch([admin.id], now + 5);
        await store.apiKeys.touch([], now + 9);
        expect((await store.apiKeys.findById(admin.id))?.lastUsedAt).toBe(now + 5);
      });

      it('keeps sessions until they expire, and drops them with their key', async () => {
        const now = Date.now();
        const key = await store.apiKeys.create({
          name: 'contract-session',
          keyHash: 'ee'.repeat(32),
          role: 'admin',
          now,
        });
        await store.sessions.create({
          idHash: 's1',
          apiKeyId: key.id,
          createdAt: now,
          expiresAt: now + 1000,
        });
        await store.sessions.create({ idHash: 's2', apiKeyId: key.id, createdAt: now, expiresAt: now + 10 });
        expect(await store.sessions.findLive('s1', now)).toMatchObject({
          apiKeyId: key.id,
          expiresAt: now + 1000,
        });
        expect(await store.sessions.findLive('s2', now + 20)).toBeUndefined();
        expect(await store.sessions.purgeExpired(now + 20)).toBe(1);
        expect(await store.sessions.remove('s2')).toBe(false);
        expect(await store.apiKeys.remove('contract-session')).toBe(true);
        expect(await store.sessions.findLive('s1', now)).toBeUndefined();
        expect(await store.apiKeys.remove('contract-session')).toBe(false);
      });
    });

    describe('consent links', () => {
      let linkSerial = 0;
      const link = (overrides: Partial<ConsentLink> = {}) => {
        const now = Date.now();
        linkSerial += 1;
        return {
          id: `lnk_contract${linkSerial}`,
          tokenHash: `${linkSerial}`.padStart(64, 'a'),
          clientRef,
          label: `@link-${linkSerial}`,
          createdAt: now,
          expiresAt: now + 60_000,
          usedAt: null,
          ...overrides,
        };
      };
      const pending = (linkId: string, stateHash: string, expiresAt = Date.now() + 60_000) => ({
        stateHash,
        linkId,
        codeVerifier: `verifier-${stateHash}`,
        nonce: null,
        redirectUri: 'https://gk.example/callback',
        createdAt: Date.now(),
        expiresAt,
      });

      it('finds a link by its token hash only, and never returns the hash', async () => {
        const made = link();
        await store.consentLinks.create(made);
        const { tokenHash, ...stored } = made;
        expect(await store.consentLinks.findByTokenHash(tokenHash)).toEqual(stored);
        expect(await store.consentLinks.get(made.id)).toEqual(stored);
        expect(await store.consentLinks.findByTokenHash('f'.repeat(64))).toBeUndefined();
        expect(await store.consentLinks.get('lnk_nothing')).toBeUndefined();
      });

      it('is used once: a second markUsed, or one after expiry, fails; markUnused reopens it', async () => {
        const now = Date.now();
        const made = link();
        await store.consentLinks.create(made);
        expect(await store.consentLinks.markUsed(made.id, now)).toBe(true);
        expect(await store.consentLinks.markUsed(made.id, now + 1)).toBe(false);
        expect((await store.consentLinks.get(made.id))?.usedAt).toBe(now);
        await store.consentLinks.markUnused(made.id);
        expect((await store.consentLinks.get(made.id))?.usedAt).toBeNull();
        expect(await store.consentLinks.markUsed(made.id, made.expiresAt)).toBe(false);
        const racing = link();
        await store.consentLinks.create(racing);
        const wins = await Promise.all([1, 2, 3].map((n) => store.consentLinks.markUsed(racing.id, now + n)));
        expect(wins.filter(Boolean)).toHaveLength(1);
      });

      it('hands each pending authorization out once, and none that expired', async () => {
        const made = link();
        await store.consentLinks.create(made);
        const now = Date.now();
        await store.consentLinks.addAuthorization({ ...pending(made.id, 'state-a'), nonce: 'n-a' });
        await store.consentLinks.addAuthorization(pending(made.id, 'state-b'));
        await store.consentLinks.addAuthorization(pending(made.id, 'state-old', now + 5));
        expect(await store.consentLinks.takeAuthorization('state-a', now)).toMatchObject({
          linkId: made.id,
          codeVerifier: 'verifier-state-a',
          nonce: 'n-a',
          redirectUri: 'https://gk.example/callback',
        });
        expect(await store.consentLinks.takeAuthorization('state-a', now)).toBeUndefined();
        expect(await store.consentLinks.takeAuthorization('state-old', now + 5)).toBeUndefined();
        expect(await store.consentLinks.takeAuthorization('state-old', now)).toBeUndefined();
        expect(await store.consentLinks.takeAuthorization('state-b', now)).toMatchObject({ nonce: null });
      });

      it('seals a pending PKCE verifier (with the code it is worth a grant)', async () => {
        const made = link();
        await store.consentLinks.create(made);
        await store.consentLinks.addAuthorization(pending(made.id, 'state-sealed'));
        const stored = await subject.storedCodeVerifiers();
        expect(stored.length).toBeGreaterThan(0);
        expect(stored.some((v) => v.includes('verifier-'))).toBe(false);
        expect(await store.consentLinks.takeAuthorization('state-sealed', Date.now())).toMatchObject({
          codeVerifier: 'verifier-state-sealed',
        });
      });

      it('purges what expired, and goes with its client', async () => {
        const now = Date.now();
        const old = link({ expiresAt: now - 10 });
        const live = link();
        await store.consentLinks.create(old);
        await store.consentLinks.create(live);
        await store.consentLinks.addAuthorization(pending(old.id, 'state-purged'));
        await store.consentLinks.addAuthorization(pending(live.id, 'state-stale', now - 10));
        await store.consentLinks.addAuthorization(pending(live.id, 'state-kept'));
        expect(await store.consentLinks.purgeExpired(now)).toBeGreaterThanOrEqual(2);
        expect(await store.consentLinks.get(old.id)).toBeUndefined();
        expect(await store.consentLinks.get(live.id)).toBeDefined();
        expect(await store.consentLinks.takeAuthorization('state-kept', now)).toBeDefined();

        const own = await store.clients.upsert({
          name: 'contract-links',
          profile: testProfile('https://id.example/token'),
          clientId: 'links-id',
          authMethod: 'none',
          scopes: ['openid'],
          now,
        });
        const owned = link({ clientRef: own.id });
        await store.consentLinks.create(owned);
        await store.consentLinks.addAuthorization(pending(owned.id, 'state-owned'));
        expect(await store.clients.remove(own.id, { withGrants: false })).toEqual({ grantLabels: [] });
        expect(await store.consentLinks.get(owned.id)).toBeUndefined();
        expect(await store.consentLinks.takeAuthorization('state-owned', now)).toBeUndefined();
      });
    });

    describe('service state', () => {
      it('moves a key with compare-and-set, once per transition', async () => {
        expect(await store.serviceState.get('contract:q')).toBeNull();
        expect(await store.serviceState.compareAndSet('contract:q', null, 'paused')).toBe(true);
        expect(await store.serviceState.compareAndSet('contract:q', null, 'paused')).toBe(false);
        expect(await store.serviceState.get('contract:q')).toBe('paused');
        expect(await store.serviceState.compareAndSet('contract:q', 'paused', null)).toBe(true);
        expect(await store.serviceState.get('contract:q')).toBeNull();
      });
    });

    describe('admin', () => {
      it('answers a ping and passes its integrity check', async () => {
        await store.admin.ping();
        expect((await store.admin.check()).ok).toBe(true);
        expect(store.admin.location.length).toBeGreaterThan(0);
        expect(store.admin.location).not.toMatch(/:[^/@]+@/);
      });

      it('refuses a key that does not open it, naming the key ids', async () => {
        const wrong = sealerOf(99);
        const other = await subject.open(wrong);
        try {
          await expect(other.admin.verifySealingKey()).rejects.toThrow(wrong.primaryKeyId);
        } finally {
          await other.admin.close();
        }
      });

      it('reseals every value under a new key, after which the old key is not needed', async () => {
        const grant = await seed();
        const rotating = await store.clients.upsert({
          name: 'contract-rekey-rotated',
          profile: testProfile('https://id.example/token'),
          clientId: 'c-rekey',
          clientSecret: 'rekey-old',
          authMethod: 'client_secret_basic',
          scopes: ['openid'],
          now: Date.now(),
        });
        await store.clients.rotateSecret(rotating.id, {
          secret: 'rekey-new',
          expiresAt: null,
          now: Date.now() + 1,
        });
        const rotated = sealerOf(8, [7]);
        const during = await subject.open(rotated);
        try {
          const report = await during.admin.rekey();
          expect(report.keyId).toBe(rotated.primaryKeyId);
          expect(report.resealed.keyCheck).toBe(1);
          expect(report.resealed.refreshTokens).toBeGreaterThanOrEqual(1);
          expect(report.resealed.clientSecrets).toBeGreaterThanOrEqual(1);
          expect(report.resealed.clientKeys).toBeGreaterThanOrEqual(1);
          expect(report.alreadyCurrent).toBe(0);
          expect((await during.admin.rekey()).alreadyCurrent).toBe(report.total);
        } finally {
          await during.admin.close();
        }
        const after = await subject.open(sealerOf(8));
        try {
          await after.admin.verifySealingKey();
          expect((await after.grants.get(grant.id))?.tokens.refreshToken()).toBe(
            `rt-${grant.label.slice('@contract-'.length)}`,
          );
          expect((await after.clients.openById(clientRef))?.target.clientSecret).toBe(
            'contract-client-secret',
          );
          expect((await after.clients.openById(rotating.id))?.target).toMatchObject({
            clientSecret: 'rekey-new',
            fallbackClientSecret: 'rekey-old',
          });
          const keyed = await after.clients.findByName('contract-keyed');
          expect((await after.clients.openById(keyed?.id ?? ''))?.target.signingKey?.privateKeyPem).toBe(
            PRIVATE_KEY_PEM,
          );
        } finally {
          await after.admin.close();
        }
        // The store under test keeps working for later tests only with the new key.
        await store.admin.close();
        store = await subject.open(sealerOf(8));
      });
    });
  });
}
