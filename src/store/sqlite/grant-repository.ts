import type Database from 'better-sqlite3';
import { and, asc, desc, eq, getTableColumns, isNull, lt, or, type SQL, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/sqlite-core';
import { type GrantRow, grants, refreshEvents } from '../../../db/sqlite/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import {
  type Grant,
  type GrantMode,
  isLive,
  type RecordedRefreshEvent,
  type RefreshEvent,
  type StoredGrant,
} from '../../grants/grant.js';
import type {
  AlertView,
  CommitResult,
  ConsentTarget,
  ExpiryQuery,
  ExpiryView,
  FailureRecord,
  FleetStats,
  FleetSummary,
  FleetSummaryQuery,
  GrantCursor,
  GrantFilter,
  GrantRepository,
  LeaseView,
  SaveConsentInput,
  SchedulableGrant,
  SchedulePage,
  TokenUpdate,
} from '../../grants/ports.js';
import {
  alertCandidatesWhere,
  alertColumns,
  alertedFromWhere,
  expiringWhere,
  expiryColumns,
  fleetStatsQueries,
  liveWhere,
  reviveValues,
  schedulableQuery,
  toFleetStats,
} from '../columns.js';
import {
  type FleetSummaryRows,
  fleetSummarySql,
  grantPageSql,
  orderEventsOf,
  type RawEventRow,
  recentEventsOfSql,
  toFleetSummary,
} from '../grant-queries.js';
import {
  commitValues,
  consentWrite,
  eventValues,
  failureValues,
  rotationOnlyValues,
  toCommitResult,
} from '../grant-writes.js';
import { asGrantState, toAlertView, toEvent, toExpiryView, toGrant, toStoredGrant } from '../rows.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';
import { WriteBatch } from './write-batch.js';

/**
 * Grants on SQLite. better-sqlite3 is synchronous; each method runs as one unit inside `guarded`,
 * which turns SQLite's storage failures into StorageErrors, and the port's promise is the only
 * asynchrony. The hot statements are prepared once: building and preparing SQL per call was the
 * largest CPU cost per refresh in the benchmark profile.
 */
export class SqliteGrantRepository implements GrantRepository {
  private readonly hot;
  /** better-sqlite3's own transaction wrapper, built once: drizzle's `db.transaction` builds one
   * per call, a measurable share of each commit. */
  private readonly inTransaction: <T>(fn: () => T) => T;
  /**
   * A transaction that writes, begun with the write lock (BEGIN IMMEDIATE): one that reads first and
   * writes later would otherwise fail at once with SQLITE_BUSY_SNAPSHOT when another process commits
   * in between, which the busy timeout does not wait out (a `seed` beside a busy service).
   */
  private readonly inWriteTransaction: <T>(fn: () => T) => T;
  /** The refresh hot path's writes (claim, fence, commit), committed together (see WriteBatch). */
  private readonly batch: WriteBatch;

  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {
    this.hot = prepareHotStatements(db);
    // Every Db comes from drizzle(sqlite), which exposes the client; the Db type just omits it.
    const { $client } = db as Db & { $client: Database.Database };
    const tx = $client.transaction((fn: () => unknown) => fn());
    this.inTransaction = <T>(fn: () => T) => tx(fn) as T;
    this.inWriteTransaction = <T>(fn: () => T) => tx.immediate(fn) as T;
    const inGuardedTransaction = <T>(fn: () => T) => guarded(() => this.inTransaction(fn));
    this.batch = new WriteBatch({
      // Nested, better-sqlite3's transaction function is a savepoint.
      transaction: inGuardedTransaction,
      savepoint: inGuardedTransaction,
      inTransaction: () => $client.inTransaction,
    });
  }

  async get(id: string): Promise<StoredGrant | undefined> {
    return guarded(() => this.stored(this.hot.get.get({ id })));
  }

  async find(idOrLabel: string): Promise<StoredGrant | undefined> {
    return guarded(() => this.stored(this.hot.find.get({ ref: idOrLabel })));
  }

  async list(): Promise<Grant[]> {
    return guarded(() => this.db.select().from(grants).orderBy(asc(grants.label)).all().map(toGrant));
  }

  async listByClient(clientRef: string): Promise<Grant[]> {
    return guarded(() =>
      this.db
        .select()
        .from(grants)
        .where(eq(grants.clientRef, clientRef))
        .orderBy(asc(grants.label))
        .all()
        .map(toGrant),
    );
  }

  async page(filter: GrantFilter, page: { after?: GrantCursor; limit: number }): Promise<Grant[]> {
    return guarded(() =>
      this.db
        .select()
        .from(G)
        .where(grantPageSql(filter, page.after))
        .orderBy(asc(G.label), asc(G.id))
        .limit(page.limit)
        .all()
        .map(toGrant),
    );
  }

  async fleetSummary(query: FleetSummaryQuery): Promise<FleetSummary> {
    const statements = fleetSummarySql(query);
    const rows = <T>(statement: SQL | undefined) => (statement ? this.db.all<T>(statement) : []);
    // One read transaction: the counts and timelines describe one moment of the fleet.
    return guarded(() =>
      this.inTransaction(() =>
        toFleetSummary(query, {
          counts: rows<FleetSummaryRows['counts'][number]>(statements.counts),
          planned: rows<FleetSummaryRows['planned'][number]>(statements.planned),
          deadlines: rows<FleetSummaryRows['deadlines'][number]>(statements.deadlines),
          outcomes: rows<FleetSummaryRows['outcomes'][number]>(statements.outcomes),
        }),
      ),
    );
  }

  async listSchedulable(dueBefore: number, page: SchedulePage): Promise<SchedulableGrant[]> {
    const q = schedulableQuery(grants, dueBefore, page);
    return guarded(() =>
      this.db
        .select(q.columns)
        .from(grants)
        .where(q.where)
        .orderBy(...q.orderBy)
        .limit(page.limit)
        .all(),
    );
  }

  async saveConsent(input: SaveConsentInput, mayReplace?: (existing: ConsentTarget) => void): Promise<Grant> {
    return guarded(() =>
      this.inWriteTransaction(() => {
        const existing = this.db.select().from(grants).where(eq(grants.label, input.label)).get();
        const write = consentWrite(input, existing, this.sealer, mayReplace);
        const row = write.replace
          ? this.db
              .update(grants)
              .set({ ...write.replace, version: sql`${grants.version} + 1` })
              .where(eq(grants.id, write.id))
              .returning()
              .get()
          : this.db.insert(grants).values(write.insert).returning().get();
        return toGrant(row);
      }),
    );
  }

  async claim(
    id: string,
    version: number,
    owner: string,
    leaseMs: number,
    inDoubtGraceMs: number,
  ): Promise<StoredGrant | undefined> {
    const row = await this.batch.run(() =>
      this.hot.claimLease.get({ id, version, owner, leaseMs, graceMs: inDoubtGraceMs }),
    );
    return this.stored(row);
  }

  async leaseView(id: string): Promise<LeaseView | undefined> {
    return guarded(() => {
      const row = this.hot.leaseView.get({ id });
      if (!row) return undefined;
      const { leaseRemainingMs, sentAgoMs, ...grant } = row;
      return { grant: toGrant(grant), leaseRemainingMs, sentAgoMs };
    });
  }

  async markSent(
    id: string,
    version: number,
    owner: string,
    minRemainingMs: number,
  ): Promise<number | undefined> {
    // Batched too: the caller's send deadline is counted from before this call, so waiting for the
    // batch's commit only makes it err early.
    const row = await this.batch.run(() => this.hot.markSent.get({ id, version, owner, minRemainingMs }));
    return row?.remainingMs;
  }

  async releaseLease(id: string, owner: string, sentAt: number | null): Promise<void> {
    guarded(() => this.hot.releaseLease.run({ id, owner, sentAt }));
  }

  async extendLease(id: string, version: number, owner: string, leaseMs: number): Promise<boolean> {
    return guarded(() => this.hot.extendLease.run({ id, version, owner, leaseMs }).changes === 1);
  }

  async commitRefresh(
    id: string,
    version: number,
    update: TokenUpdate,
    event: RefreshEvent,
  ): Promise<CommitResult | undefined> {
    const params = { id, version, ...commitValues(id, update, this.sealer), at: event.at };
    const row = await this.batch.run(() => {
      const updated = this.hot.commitRefresh.get(params);
      if (updated) {
        const conflict = !isLive(asGrantState(updated.state));
        this.insertEvent(id, version, conflict ? { ...event, outcome: 'conflict' } : event);
      }
      return updated;
    });
    // Opened after the commit: the batch's transaction holds the write lock only for the statements.
    return toCommitResult(this.stored(row));
  }

  async commitRotationOnly(
    id: string,
    version: number,
    owner: string,
    update: { refreshToken: string; refreshTokenUsedAt: number },
    failure: { nextRefreshAt: number; message: string },
    event: RefreshEvent,
  ): Promise<Grant | undefined> {
    const params = {
      id,
      version,
      owner,
      ...rotationOnlyValues(id, update, failure, this.sealer),
      at: event.at,
    };
    return guarded(() => this.withEvent(id, version, event, () => this.hot.commitRotationOnly.get(params)));
  }

  async recordFailure(
    id: string,
    version: number,
    owner: string,
    failure: FailureRecord,
    event: RefreshEvent,
  ): Promise<Grant | undefined> {
    const { keepSent, ...values } = failureValues(failure);
    // SQLite binds no booleans.
    const params = { id, version, owner, ...values, keepSent: keepSent ? 1 : 0, at: event.at };
    return guarded(() => this.withEvent(id, version, event, () => this.hot.recordFailure.get(params)));
  }

  async recordEvent(id: string, version: number, event: RefreshEvent): Promise<void> {
    guarded(() => this.insertEvent(id, version, event));
  }

  async reviveForRetry(id: string, now: number): Promise<Grant | undefined> {
    return guarded(() => {
      const row = this.db
        .update(grants)
        .set(reviveValues(grants, now))
        .where(eq(grants.id, id))
        .returning()
        .get();
      return row && toGrant(row);
    });
  }

  async setMode(id: string, mode: GrantMode, nextRefreshAt: number, now: number): Promise<Grant | undefined> {
    return guarded(() => {
      const row = this.db
        .update(grants)
        .set({ mode, nextRefreshAt, updatedAt: now })
        .where(eq(grants.id, id))
        .returning()
        .get();
      return row && toGrant(row);
    });
  }

  async remove(id: string): Promise<boolean> {
    return guarded(() => this.db.delete(grants).where(eq(grants.id, id)).run().changes === 1);
  }

  async recentEvents(id: string, limit: number): Promise<RecordedRefreshEvent[]> {
    return guarded(() =>
      this.db
        .select()
        .from(refreshEvents)
        .where(eq(refreshEvents.grantId, id))
        .orderBy(desc(refreshEvents.id))
        .limit(limit)
        .all()
        .map(toEvent),
    );
  }

  async recentEventsOf(ids: readonly string[], perGrant: number): Promise<RecordedRefreshEvent[]> {
    if (ids.length === 0 || perGrant <= 0) return [];
    return guarded(() => orderEventsOf(ids, this.db.all<RawEventRow>(recentEventsOfSql(ids, perGrant))));
  }

  async fleetStats(): Promise<FleetStats> {
    const q = fleetStatsQueries(grants, STORE_NOW);
    return guarded(() =>
      toFleetStats({
        byState: this.db.select(q.byState).from(grants).groupBy(grants.state).all(),
        earliest: this.db.select(q.earliest.columns).from(grants).where(q.earliest.where).get(),
        oldestUse: this.db
          .select(q.oldestUse.columns)
          .from(grants)
          .where(q.oldestUse.where)
          .groupBy(grants.clientRef)
          .all(),
        inDoubt: this.db.select(q.inDoubt.columns).from(grants).where(q.inDoubt.where).get(),
      }),
    );
  }

  async listAlertCandidates(): Promise<AlertView[]> {
    return guarded(() =>
      this.db.select(ALERT_COLUMNS).from(grants).where(alertCandidatesWhere(grants)).all().map(toAlertView),
    );
  }

  async listExpiring(query: ExpiryQuery): Promise<ExpiryView[]> {
    return guarded(() =>
      this.db
        .select(expiryColumns(grants))
        .from(grants)
        .where(expiringWhere(grants, query))
        .orderBy(asc(grants.id))
        .all()
        .map(toExpiryView),
    );
  }

  async alertView(id: string): Promise<AlertView | undefined> {
    return guarded(() => {
      const row = this.db.select(ALERT_COLUMNS).from(grants).where(eq(grants.id, id)).get();
      return row && toAlertView(row);
    });
  }

  async markAlerted(id: string, from: string | null, to: string | null): Promise<boolean> {
    return guarded(
      () =>
        this.db
          .update(grants)
          .set({ alertedState: to })
          .where(alertedFromWhere(grants, id, from))
          .run().changes === 1,
    );
  }

  /** Runs a conditional grant update and, only when it matched, writes its event: one transaction. */
  private withEvent(
    id: string,
    version: number,
    event: RefreshEvent,
    update: () => GrantRow | undefined,
  ): Grant | undefined {
    return this.inTransaction(() => {
      const row = update();
      if (!row) return undefined;
      this.insertEvent(id, version, event);
      return toGrant(row);
    });
  }

  private insertEvent(id: string, version: number, event: RefreshEvent): void {
    const { rotated, ...values } = eventValues(event);
    // SQLite binds no booleans.
    this.hot.insertEvent.run({
      grantId: id,
      version,
      ...values,
      rotated: rotated === null ? null : Number(rotated),
    });
  }

  private stored(row: GrantRow | undefined): StoredGrant | undefined {
    return toStoredGrant(row, this.sealer);
  }
}

/** The grants table as `g`, the alias the shared queries (../grant-queries.ts) name. */
const G = alias(grants, 'g');

const ALERT_COLUMNS = alertColumns(grants);

const p = sql.placeholder;

/** The store's clock in epoch ms: leases are measured on it so callers' clocks may disagree (invariant 2). */
const STORE_NOW = sql`cast(unixepoch('subsec') * 1000 as integer)`;

/** Plain SQL with placeholders, prepared once per store. */
function prepareHotStatements(db: Db) {
  const live = liveWhere(grants);
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
        refreshExpiresAt: sql`coalesce(${p('refreshEndsAt')}, ${grants.refreshExpiresAt})`,
        refreshExpiresReason: sql`coalesce(${p('refreshEndsReason')}, ${grants.refreshExpiresReason})`,
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
