import type Database from 'better-sqlite3';
import { and, asc, desc, eq, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import {
  type GrantMode,
  type GrantRow,
  type GrantState,
  grants,
  LIVE_GRANT_STATES,
  type NewRefreshEventRow,
  type RefreshEventRow,
  refreshEvents,
} from '../../db/schema.js';
import type { Sealer } from '../crypto/sealer.js';
import { newId } from './ids.js';

export interface GrantTokens {
  accessToken: string;
  refreshToken: string;
}

/** What a refresh or a consent hands the store; the store seals the tokens itself. */
export interface TokenUpdate {
  accessToken: string;
  /** Absent when the provider did not rotate: the stored refresh token is kept. */
  refreshToken?: string;
  tokenType?: string;
  scope?: string;
  accessExpiresAt: number;
  accessLifetimeMs: number;
  refreshTokenUsedAt: number;
  nextRefreshAt: number;
}

export type RefreshEvent = Omit<NewRefreshEventRow, 'id' | 'grantId' | 'version'>;

export interface SchedulableGrant {
  id: string;
  version: number;
  nextRefreshAt: number;
}

/** Aggregates for metrics, computed in SQL so a scrape does not load every row. */
export interface FleetStats {
  byState: Array<{ state: GrantState; count: number }>;
  /** Earliest access-token expiry among live `eager` grants (keepalive tokens lapse by design). */
  earliestEagerExpiry: number | null;
  /** Per client, the live grant whose refresh token has sat unused longest. */
  oldestUseByClient: Array<{ clientRef: string; usedAt: number }>;
}

/** What the alert logic needs to know about a grant. */
export type AlertView = Pick<GrantRow, 'id' | 'state' | 'consecutiveFailures' | 'alertedState'>;

export interface SaveConsentInput extends TokenUpdate {
  clientRef: string;
  label: string;
  subject?: string;
  refreshToken: string;
  now: number;
}

/**
 * The grant repository: the only code that reads or writes grant rows. Every state change is a
 * compare-and-swap on `version` (and on the lease owner where one is held), in plain SQL that
 * PostgreSQL runs as well.
 */
export class GrantStore {
  /** The refresh and token-read paths, prepared once: building and preparing SQL per call was the
   * largest CPU cost per refresh in the benchmark profile. */
  private readonly hot;
  /** better-sqlite3's own transaction wrapper, built once: drizzle's `db.transaction` builds one
   * per call, a measurable share of each commit. */
  private readonly inTransaction: <T>(fn: () => T) => T;

  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {
    this.hot = prepareHotStatements(db);
    // Every Db comes from drizzle(sqlite), which exposes the client; the Db type just omits it.
    const { $client } = db as Db & { $client: Database.Database };
    const tx = $client.transaction((fn: () => unknown) => fn());
    this.inTransaction = <T>(fn: () => T) => tx(fn) as T;
  }

  get(id: string): GrantRow | undefined {
    return this.hot.get.get({ id });
  }

  /** Operators name grants by id or by label. */
  find(idOrLabel: string): GrantRow | undefined {
    return this.hot.find.get({ ref: idOrLabel });
  }

  list(): GrantRow[] {
    return this.db.select().from(grants).orderBy(asc(grants.label)).all();
  }

  /** Live grants due before `dueBefore`: what the reconciler makes sure has a job. */
  listSchedulable(dueBefore: number): SchedulableGrant[] {
    return this.db
      .select({ id: grants.id, version: grants.version, nextRefreshAt: grants.nextRefreshAt })
      .from(grants)
      .where(and(inArray(grants.state, [...LIVE_GRANT_STATES]), lte(grants.nextRefreshAt, dueBefore)))
      .all();
  }

  openTokens(grant: GrantRow): GrantTokens {
    return { accessToken: this.openAccessToken(grant), refreshToken: this.openRefreshToken(grant) };
  }

  /** One token alone, for paths that need only that one (a read, a refresh): one unseal, not two. */
  openAccessToken(grant: GrantRow): string {
    return this.sealer.open(grant.accessTokenSealed, sealContext(grant.id, 'access_token'));
  }

  openRefreshToken(grant: GrantRow): string {
    return this.sealer.open(grant.refreshTokenSealed, sealContext(grant.id, 'refresh_token'));
  }

  /**
   * Stores a freshly consented grant. Re-consenting an existing label replaces its tokens in
   * place, keeping its id and history; the version moves on so jobs for the old tokens go stale.
   */
  saveConsent(input: SaveConsentInput): GrantRow {
    return this.db.transaction((tx) => {
      const existing = tx.select().from(grants).where(eq(grants.label, input.label)).get();
      const id = existing?.id ?? newId('g');
      const values = {
        clientRef: input.clientRef,
        subject: input.subject ?? existing?.subject ?? null,
        state: 'active' as const,
        accessTokenSealed: this.sealer.seal(input.accessToken, sealContext(id, 'access_token')),
        refreshTokenSealed: this.sealer.seal(input.refreshToken, sealContext(id, 'refresh_token')),
        tokenType: input.tokenType ?? null,
        scope: input.scope ?? null,
        accessExpiresAt: input.accessExpiresAt,
        accessLifetimeMs: input.accessLifetimeMs,
        refreshTokenUsedAt: input.refreshTokenUsedAt,
        nextRefreshAt: input.nextRefreshAt,
        leaseOwner: null,
        leaseUntil: null,
        consecutiveFailures: 0,
        lastError: null,
        lastErrorAt: null,
        updatedAt: input.now,
      };
      if (existing) {
        return tx
          .update(grants)
          .set({ ...values, version: sql`${grants.version} + 1` })
          .where(eq(grants.id, id))
          .returning()
          .get();
      }
      return tx
        .insert(grants)
        .values({
          ...values,
          id,
          label: input.label,
          version: 0,
          lastRefreshedAt: null,
          createdAt: input.now,
        })
        .returning()
        .get();
    });
  }

  /**
   * Claims the right to refresh: succeeds only for a live grant still at `version` whose lease is
   * free or expired. No lease, no refresh (invariant 2).
   */
  claimLease(id: string, version: number, owner: string, now: number, leaseMs: number): boolean {
    return this.claim(id, version, owner, now, leaseMs) !== undefined;
  }

  /** claimLease that also returns the claimed row: the refresher's claim and read in one statement. */
  claim(id: string, version: number, owner: string, now: number, leaseMs: number): GrantRow | undefined {
    return this.hot.claimLease.get({ id, version, owner, now, until: now + leaseMs });
  }

  releaseLease(id: string, owner: string): void {
    this.hot.releaseLease.run({ id, owner });
  }

  /** Keeps our lease alive while we still hold the grant's work (tokens the db has not taken yet). */
  extendLease(id: string, version: number, owner: string, until: number): boolean {
    return this.hot.extendLease.run({ id, version, owner, until }).changes === 1;
  }

  /**
   * Commits a token response and its event in one transaction (invariant 3). Conditional on the
   * version only: a successful response is the newest truth about the grant, so it is kept even if
   * our lease ran out, while a worker that was overtaken can never overwrite newer tokens.
   */
  commitRefresh(id: string, version: number, update: TokenUpdate, event: RefreshEvent): GrantRow | undefined {
    const params = {
      id,
      version,
      access: this.sealer.seal(update.accessToken, sealContext(id, 'access_token')),
      // null keeps the stored value (coalesce): no refresh token back means no rotation.
      refresh:
        update.refreshToken === undefined
          ? null
          : this.sealer.seal(update.refreshToken, sealContext(id, 'refresh_token')),
      tokenType: update.tokenType ?? null,
      scope: update.scope ?? null,
      expiresAt: update.accessExpiresAt,
      lifetimeMs: update.accessLifetimeMs,
      usedAt: update.refreshTokenUsedAt,
      nextAt: update.nextRefreshAt,
      at: event.at,
    };
    return this.withEvent(id, version, event, () => this.hot.commitRefresh.get(params));
  }

  /**
   * Records a failed attempt made under our lease and releases it. `state` decides whether the
   * grant keeps being retried (`failing`) or stops until an operator acts.
   */
  recordFailure(
    id: string,
    version: number,
    owner: string,
    failure: { state: GrantState; nextRefreshAt?: number; message: string },
    event: RefreshEvent,
  ): GrantRow | undefined {
    const params = {
      id,
      version,
      owner,
      state: failure.state,
      message: failure.message,
      nextAt: failure.nextRefreshAt ?? null,
      at: event.at,
    };
    return this.withEvent(id, version, event, () => this.hot.recordFailure.get(params));
  }

  /** Runs a conditional grant update and, only when it matched, writes its event: one transaction. */
  private withEvent(
    id: string,
    version: number,
    event: RefreshEvent,
    update: () => GrantRow | undefined,
  ): GrantRow | undefined {
    return this.inTransaction(() => {
      const row = update();
      if (row) this.recordEvent(id, version, event);
      return row;
    });
  }

  /** Notes that another holder of the grant rotated it first: not a failure, just history. */
  recordEvent(id: string, version: number, event: RefreshEvent): void {
    this.hot.insertEvent.run({
      grantId: id,
      version,
      at: event.at,
      trigger: event.trigger,
      outcome: event.outcome,
      durationMs: event.durationMs ?? null,
      httpStatus: event.httpStatus ?? null,
      errorCode: event.errorCode ?? null,
      message: event.message ?? null,
      // SQLite binds no booleans.
      rotated: event.rotated === undefined || event.rotated === null ? null : Number(event.rotated),
    });
  }

  /** Makes a live grant due now; returns it so the caller can schedule the job. */
  requestRefreshNow(id: string, now: number): GrantRow | undefined {
    return this.db
      .update(grants)
      .set({ nextRefreshAt: now, updatedAt: now })
      .where(and(eq(grants.id, id), inArray(grants.state, [...LIVE_GRANT_STATES])))
      .returning()
      .get();
  }

  /**
   * Switches between eager and keepalive refreshing with the next refresh replanned by the caller.
   * Leaves `version` alone: only a lease holder may move it, or an in-flight refresh would be lost.
   */
  setMode(id: string, mode: GrantMode, nextRefreshAt: number, now: number): GrantRow | undefined {
    return this.db
      .update(grants)
      .set({ mode, nextRefreshAt, updatedAt: now })
      .where(eq(grants.id, id))
      .returning()
      .get();
  }

  fleetStats(): FleetStats {
    const live = inArray(grants.state, [...LIVE_GRANT_STATES]);
    const byState = this.db
      .select({ state: grants.state, count: sql<number>`count(*)` })
      .from(grants)
      .groupBy(grants.state)
      .all();
    const earliest = this.db
      .select({ at: sql<number | null>`min(${grants.accessExpiresAt})` })
      .from(grants)
      .where(and(live, eq(grants.mode, 'eager')))
      .get();
    const oldestUseByClient = this.db
      .select({ clientRef: grants.clientRef, usedAt: sql<number>`min(${grants.refreshTokenUsedAt})` })
      .from(grants)
      .where(live)
      .groupBy(grants.clientRef)
      .all();
    return { byState, earliestEagerExpiry: earliest?.at ?? null, oldestUseByClient };
  }

  /** Grants an alert may be due for: anything not plainly active, or alerted and not yet cleared. */
  listAlertCandidates(): AlertView[] {
    return this.db
      .select({
        id: grants.id,
        state: grants.state,
        consecutiveFailures: grants.consecutiveFailures,
        alertedState: grants.alertedState,
      })
      .from(grants)
      .where(or(sql`${grants.state} <> 'active'`, sql`${grants.alertedState} IS NOT NULL`))
      .all();
  }

  /** Compare-and-swap on `alertedState`, so each transition is alerted once across processes. */
  markAlerted(id: string, from: string | null, to: string | null): boolean {
    const matchFrom = from === null ? isNull(grants.alertedState) : eq(grants.alertedState, from);
    return (
      this.db
        .update(grants)
        .set({ alertedState: to })
        .where(and(eq(grants.id, id), matchFrom))
        .run().changes === 1
    );
  }

  listByClient(clientRef: string): GrantRow[] {
    return this.db.select().from(grants).where(eq(grants.clientRef, clientRef)).all();
  }

  /**
   * An operator's retry: a stopped grant (needs_reconsent, client_error) becomes `failing` again and
   * any live grant is due now. The version is kept, so a job already planned for it still counts.
   */
  reviveForRetry(id: string, now: number): GrantRow | undefined {
    return this.db
      .update(grants)
      .set({
        state: sql`case when ${grants.state} in ('active', 'failing') then ${grants.state} else 'failing' end`,
        nextRefreshAt: now,
        updatedAt: now,
      })
      .where(eq(grants.id, id))
      .returning()
      .get();
  }

  /** Deletes a grant and (by cascade) its events; its queued jobs go stale and do nothing. */
  remove(id: string): boolean {
    return this.db.delete(grants).where(eq(grants.id, id)).run().changes === 1;
  }

  recentEvents(id: string, limit = 20): RefreshEventRow[] {
    return this.db
      .select()
      .from(refreshEvents)
      .where(eq(refreshEvents.grantId, id))
      .orderBy(desc(refreshEvents.id))
      .limit(limit)
      .all();
  }
}

export function sealContext(grantId: string, field: 'access_token' | 'refresh_token'): string {
  return `grant:${grantId}:${field}`;
}

const p = sql.placeholder;

/** Plain SQL with placeholders (it runs on PostgreSQL too), prepared once per store. */
function prepareHotStatements(db: Db) {
  const live = inArray(grants.state, [...LIVE_GRANT_STATES]);
  return {
    get: db
      .select()
      .from(grants)
      .where(eq(grants.id, p('id')))
      .prepare(),
    find: db
      .select()
      .from(grants)
      .where(or(eq(grants.id, p('ref')), eq(grants.label, p('ref'))))
      .prepare(),
    claimLease: db
      .update(grants)
      .set({ leaseOwner: sql`${p('owner')}`, leaseUntil: sql`${p('until')}` })
      .where(
        and(
          eq(grants.id, p('id')),
          eq(grants.version, p('version')),
          live,
          or(isNull(grants.leaseUntil), lt(grants.leaseUntil, p('now'))),
        ),
      )
      .returning()
      .prepare(),
    extendLease: db
      .update(grants)
      .set({ leaseUntil: sql`${p('until')}` })
      .where(and(eq(grants.id, p('id')), eq(grants.version, p('version')), eq(grants.leaseOwner, p('owner'))))
      .prepare(),
    releaseLease: db
      .update(grants)
      .set({ leaseOwner: null, leaseUntil: null })
      .where(and(eq(grants.id, p('id')), eq(grants.leaseOwner, p('owner'))))
      .prepare(),
    commitRefresh: db
      .update(grants)
      .set({
        accessTokenSealed: sql`${p('access')}`,
        refreshTokenSealed: sql`coalesce(${p('refresh')}, ${grants.refreshTokenSealed})`,
        tokenType: sql`coalesce(${p('tokenType')}, ${grants.tokenType})`,
        scope: sql`coalesce(${p('scope')}, ${grants.scope})`,
        accessExpiresAt: sql`${p('expiresAt')}`,
        accessLifetimeMs: sql`${p('lifetimeMs')}`,
        refreshTokenUsedAt: sql`${p('usedAt')}`,
        nextRefreshAt: sql`${p('nextAt')}`,
        version: sql`${grants.version} + 1`,
        state: 'active',
        consecutiveFailures: 0,
        lastError: null,
        lastErrorAt: null,
        lastRefreshedAt: sql`${p('at')}`,
        leaseOwner: null,
        leaseUntil: null,
        updatedAt: sql`${p('at')}`,
      })
      .where(and(eq(grants.id, p('id')), eq(grants.version, p('version'))))
      .returning()
      .prepare(),
    recordFailure: db
      .update(grants)
      .set({
        state: sql`${p('state')}`,
        consecutiveFailures: sql`${grants.consecutiveFailures} + 1`,
        lastError: sql`${p('message')}`,
        lastErrorAt: sql`${p('at')}`,
        nextRefreshAt: sql`coalesce(${p('nextAt')}, ${grants.nextRefreshAt})`,
        leaseOwner: null,
        leaseUntil: null,
        updatedAt: sql`${p('at')}`,
      })
      .where(and(eq(grants.id, p('id')), eq(grants.version, p('version')), eq(grants.leaseOwner, p('owner'))))
      .returning()
      .prepare(),
    insertEvent: db
      .insert(refreshEvents)
      .values({
        grantId: sql`${p('grantId')}`,
        version: sql`${p('version')}`,
        at: sql`${p('at')}`,
        trigger: sql`${p('trigger')}`,
        outcome: sql`${p('outcome')}`,
        durationMs: sql`${p('durationMs')}`,
        httpStatus: sql`${p('httpStatus')}`,
        errorCode: sql`${p('errorCode')}`,
        message: sql`${p('message')}`,
        rotated: sql`${p('rotated')}`,
      })
      .prepare(),
  };
}
