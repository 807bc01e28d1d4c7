import type Database from 'better-sqlite3';
import { and, asc, desc, eq, getTableColumns, inArray, isNull, lt, lte, or, sql } from 'drizzle-orm';
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
import type { AlertView } from '../notify/alert-policy.js';
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

/** A grant with its lease read on the store's clock. */
export interface LeaseView {
  grant: GrantRow;
  /** Lease time left (negative: expired); null when no lease is held. */
  leaseRemainingMs: number | null;
  /** How long ago an unsettled request was sent; null when none is outstanding. */
  sentAgoMs: number | null;
}

export interface CommitResult {
  grant: GrantRow;
  /** The grant had been stopped meanwhile: tokens stored, state and evidence left as they were. */
  conflict: boolean;
}

/** Aggregates for metrics, computed in SQL so a scrape does not load every row. */
export interface FleetStats {
  byState: Array<{ state: GrantState; count: number }>;
  /** Earliest access-token expiry among live `eager` grants (keepalive tokens lapse by design). */
  earliestEagerExpiry: number | null;
  /** Per client, the live grant whose refresh token has sat unused longest. */
  oldestUseByClient: Array<{ clientRef: string; usedAt: number }>;
  /** Grants with a request sent and no answer settled, whose lease is over (invariant 2). */
  inDoubt: number;
}

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
   * `mayReplace` sees the grant the label names, inside the same transaction, and throws to refuse
   * (a consent of another account must never take that grant over).
   */
  saveConsent(
    input: SaveConsentInput,
    mayReplace?: (existing: Pick<GrantRow, 'id' | 'clientRef' | 'subject'>) => void,
  ): GrantRow {
    return this.db.transaction((tx) => {
      const existing = tx.select().from(grants).where(eq(grants.label, input.label)).get();
      if (existing) mayReplace?.(existing);
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
   * Claims the right to refresh (invariant 2): succeeds only for a live grant still at `version`
   * whose lease is free or expired, and, when a holder marked a request sent and nothing settled it,
   * only once `inDoubtGraceMs` has passed since that send (its answer may still be on its way, and a
   * replay of the refresh token may revoke the grant). Lease times are the store's clock, never the
   * caller's. The claimed row keeps `leaseSentAt` of an unsettled earlier send: the grant stays in
   * doubt until an answer settles it. Undefined: someone else holds it, it moved on, or it stopped.
   */
  claim(
    id: string,
    version: number,
    owner: string,
    leaseMs: number,
    inDoubtGraceMs: number,
  ): GrantRow | undefined {
    return this.hot.claimLease.get({ id, version, owner, leaseMs, graceMs: inDoubtGraceMs });
  }

  /** The grant with its lease measured on the store's clock; undefined when it no longer exists. */
  leaseView(id: string): LeaseView | undefined {
    const row = this.hot.leaseView.get({ id });
    if (!row) return undefined;
    const { leaseRemainingMs, sentAgoMs, ...grant } = row;
    return { grant, leaseRemainingMs, sentAgoMs };
  }

  /**
   * The fence, run immediately before a token request is written: the lease must still be ours, at
   * `version`, with more than `minRemainingMs` left on the store's clock. Marks the request sent in
   * the same statement. Returns the lease time left, or undefined: do not send, nothing was spent.
   */
  markSent(id: string, version: number, owner: string, minRemainingMs: number): number | undefined {
    return this.hot.markSent.get({ id, version, owner, minRemainingMs })?.remainingMs;
  }

  /**
   * Gives a lease back without an answer. `sentAt` is what the in-doubt mark must be afterwards:
   * the value the claim found (an earlier unsettled send, or null) when our own request never left.
   */
  releaseLease(id: string, owner: string, sentAt: number | null): void {
    this.hot.releaseLease.run({ id, owner, sentAt });
  }

  /** Keeps our lease alive while we still hold the grant's work (tokens the db has not taken yet). */
  extendLease(id: string, version: number, owner: string, leaseMs: number): boolean {
    return this.hot.extendLease.run({ id, version, owner, leaseMs }).changes === 1;
  }

  /**
   * Commits a token response and its event in one transaction (invariant 3). Conditional on the
   * version only: a successful response is the newest truth about the grant, so it is kept even if
   * our lease ran out, while a worker that was overtaken can never overwrite newer tokens. A grant
   * stopped meanwhile keeps its state and evidence (a late commit never revives it): the tokens are
   * stored, since they may be the live ones, and the event says `conflict`.
   * Undefined: the version moved on, nothing was written.
   */
  commitRefresh(
    id: string,
    version: number,
    update: TokenUpdate,
    event: RefreshEvent,
  ): CommitResult | undefined {
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
    return this.inTransaction(() => {
      const grant = this.hot.commitRefresh.get(params);
      if (!grant) return undefined;
      const conflict = !isLive(grant.state);
      this.recordEvent(id, version, conflict ? { ...event, outcome: 'conflict' } : event);
      return { grant, conflict };
    });
  }

  /**
   * An answer whose access token could not be used but whose rotated refresh token could: the new
   * refresh token is stored (the old one is spent) and the attempt is recorded as a failure, in one
   * transaction. Conditional on the version and our lease, like recordFailure.
   */
  commitRotationOnly(
    id: string,
    version: number,
    owner: string,
    update: { refreshToken: string; refreshTokenUsedAt: number },
    failure: { nextRefreshAt: number; message: string },
    event: RefreshEvent,
  ): GrantRow | undefined {
    const params = {
      id,
      version,
      owner,
      refresh: this.sealer.seal(update.refreshToken, sealContext(id, 'refresh_token')),
      usedAt: update.refreshTokenUsedAt,
      nextAt: failure.nextRefreshAt,
      message: failure.message,
      at: event.at,
    };
    return this.withEvent(id, version, event, () => this.hot.commitRotationOnly.get(params));
  }

  /**
   * Records a failed attempt made under our lease and releases it. `state` decides whether the
   * grant keeps being retried (`failing`) or stops until an operator acts.
   */
  recordFailure(
    id: string,
    version: number,
    owner: string,
    failure: {
      state: GrantState;
      nextRefreshAt?: number;
      message: string;
      /** The answer never came: the grant stays in doubt (the mark is kept) instead of settled. */
      inDoubt?: boolean;
    },
    event: RefreshEvent,
  ): GrantRow | undefined {
    const params = {
      id,
      version,
      owner,
      state: failure.state,
      message: failure.message,
      nextAt: failure.nextRefreshAt ?? null,
      keepSent: failure.inDoubt ? 1 : 0,
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
    const inDoubt = this.db
      .select({ count: sql<number>`count(*)` })
      .from(grants)
      .where(
        and(
          sql`${grants.leaseSentAt} is not null`,
          or(isNull(grants.leaseUntil), lt(grants.leaseUntil, STORE_NOW)),
        ),
      )
      .get();
    return {
      byState,
      earliestEagerExpiry: earliest?.at ?? null,
      oldestUseByClient,
      inDoubt: inDoubt?.count ?? 0,
    };
  }

  /**
   * Grants an alert may be due for: anything not plainly active, in doubt, or alerted and not yet
   * cleared.
   */
  listAlertCandidates(): AlertView[] {
    return this.db
      .select(ALERT_COLUMNS)
      .from(grants)
      .where(
        or(
          sql`${grants.state} <> 'active'`,
          sql`${grants.alertedState} IS NOT NULL`,
          sql`${grants.leaseSentAt} IS NOT NULL`,
        ),
      )
      .all();
  }

  /** One grant as the alert logic sees it; undefined when it no longer exists. */
  alertView(id: string): AlertView | undefined {
    return this.db.select(ALERT_COLUMNS).from(grants).where(eq(grants.id, id)).get();
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

export function isLive(state: GrantState): boolean {
  return LIVE_GRANT_STATES.includes(state);
}

export function sealContext(grantId: string, field: 'access_token' | 'refresh_token'): string {
  return `grant:${grantId}:${field}`;
}

const ALERT_COLUMNS = {
  id: grants.id,
  state: grants.state,
  consecutiveFailures: grants.consecutiveFailures,
  alertedState: grants.alertedState,
  leaseSentAt: grants.leaseSentAt,
  leaseUntil: grants.leaseUntil,
};

const p = sql.placeholder;

/** The store's clock in epoch ms: leases are measured on it so callers' clocks may disagree (invariant 2). */
const STORE_NOW = sql`cast(unixepoch('subsec') * 1000 as integer)`;

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
      .set({ leaseOwner: sql`${p('owner')}`, leaseUntil: sql`${STORE_NOW} + ${p('leaseMs')}` })
      .where(
        and(
          eq(grants.id, p('id')),
          eq(grants.version, p('version')),
          live,
          or(isNull(grants.leaseUntil), lt(grants.leaseUntil, STORE_NOW)),
          or(isNull(grants.leaseSentAt), sql`${grants.leaseSentAt} + ${p('graceMs')} < ${STORE_NOW}`),
        ),
      )
      .returning()
      .prepare(),
    leaseView: db
      .select({
        ...getTableColumns(grants),
        leaseRemainingMs: sql<number | null>`${grants.leaseUntil} - ${STORE_NOW}`,
        sentAgoMs: sql<number | null>`${STORE_NOW} - ${grants.leaseSentAt}`,
      })
      .from(grants)
      .where(eq(grants.id, p('id')))
      .prepare(),
    markSent: db
      .update(grants)
      .set({ leaseSentAt: STORE_NOW })
      .where(
        and(
          eq(grants.id, p('id')),
          eq(grants.version, p('version')),
          eq(grants.leaseOwner, p('owner')),
          sql`${grants.leaseUntil} - ${STORE_NOW} > ${p('minRemainingMs')}`,
        ),
      )
      .returning({ remainingMs: sql<number>`${grants.leaseUntil} - ${STORE_NOW}` })
      .prepare(),
    extendLease: db
      .update(grants)
      .set({ leaseUntil: sql`${STORE_NOW} + ${p('leaseMs')}` })
      .where(and(eq(grants.id, p('id')), eq(grants.version, p('version')), eq(grants.leaseOwner, p('owner'))))
      .prepare(),
    releaseLease: db
      .update(grants)
      .set({ leaseOwner: null, leaseUntil: null, leaseSentAt: sql`${p('sentAt')}` })
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
        // A stopped grant keeps its state and evidence (invariant 2: no silent revival).
        state: sql`case when ${live} then 'active' else ${grants.state} end`,
        consecutiveFailures: sql`case when ${live} then 0 else ${grants.consecutiveFailures} end`,
        lastError: sql`case when ${live} then null else ${grants.lastError} end`,
        lastErrorAt: sql`case when ${live} then null else ${grants.lastErrorAt} end`,
        lastRefreshedAt: sql`${p('at')}`,
        leaseOwner: null,
        leaseUntil: null,
        leaseSentAt: null,
        updatedAt: sql`${p('at')}`,
      })
      .where(and(eq(grants.id, p('id')), eq(grants.version, p('version'))))
      .returning()
      .prepare(),
    commitRotationOnly: db
      .update(grants)
      .set({
        refreshTokenSealed: sql`${p('refresh')}`,
        refreshTokenUsedAt: sql`${p('usedAt')}`,
        version: sql`${grants.version} + 1`,
        state: 'failing',
        consecutiveFailures: sql`${grants.consecutiveFailures} + 1`,
        lastError: sql`${p('message')}`,
        lastErrorAt: sql`${p('at')}`,
        nextRefreshAt: sql`${p('nextAt')}`,
        leaseOwner: null,
        leaseUntil: null,
        leaseSentAt: null,
        updatedAt: sql`${p('at')}`,
      })
      .where(and(eq(grants.id, p('id')), eq(grants.version, p('version')), eq(grants.leaseOwner, p('owner'))))
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
        // An answer settles the send; a lost one leaves the grant in doubt.
        leaseSentAt: sql`case when ${p('keepSent')} = 1 then ${grants.leaseSentAt} else null end`,
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
