import { asc, desc, eq, getTableColumns, type SQL, sql } from 'drizzle-orm';
import { alias, type PgTable } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import { type GrantRow, grants, refreshEvents } from '../../../db/postgres/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import type {
  Grant,
  GrantMode,
  RecordedRefreshEvent,
  RefreshEvent,
  StoredGrant,
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
  reviveValues,
  schedulableQuery,
  toFleetStats,
} from '../columns.js';
import {
  type FleetSummaryRows,
  fleetSummarySql,
  grantPageSql,
  LIVE_STATES_SQL,
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
import { toAlertView, toEvent, toExpiryView, toGrant, toStoredGrant } from '../rows.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

/** `"column" as "field"` for every column, so a raw row comes back in the schema's own field names. */
function selectList(table: PgTable, from?: string): string {
  const prefix = from ? `${from}.` : '';
  return Object.entries(getTableColumns(table))
    .map(([field, column]) => `${prefix}"${column.name}" as "${field}"`)
    .join(', ');
}

const GRANT_FIELDS = selectList(grants);
/** The server's clock in epoch ms (invariant 2): every replica's lease is measured on it. */
const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';
const EVENT_COLUMNS =
  'grant_id, version, at, trigger, outcome, duration_ms, http_status, error_code, message, rotated';

/**
 * The statements of a refresh, one round trip each. A commit and its event are one statement (a
 * data-modifying CTE), which PostgreSQL runs atomically: no transaction is held open across round
 * trips on the hot path, and an event that cannot be written undoes the commit (invariant 3).
 * They run as named prepared statements, parsed once per connection.
 */
const HOT = {
  get: `select ${GRANT_FIELDS} from grants where id = $1`,
  find: `select ${GRANT_FIELDS} from grants where id = $1 or label = $1`,
  claim: `update grants set lease_owner = $3, lease_until = ${NOW_MS} + $4::bigint
    where id = $1 and version = $2 and state in ${LIVE_STATES_SQL}
      and (lease_until is null or lease_until < ${NOW_MS})
      and (lease_sent_at is null or lease_sent_at + $5::bigint < ${NOW_MS})
    returning ${GRANT_FIELDS}`,
  leaseView: `select ${GRANT_FIELDS}, lease_until - ${NOW_MS} as "leaseRemainingMs",
      ${NOW_MS} - lease_sent_at as "sentAgoMs" from grants where id = $1`,
  markSent: `update grants set lease_sent_at = ${NOW_MS}
    where id = $1 and version = $2 and lease_owner = $3 and lease_until - ${NOW_MS} > $4::bigint
    returning lease_until - ${NOW_MS} as "remainingMs"`,
  extendLease: `update grants set lease_until = ${NOW_MS} + $4::bigint
    where id = $1 and version = $2 and lease_owner = $3`,
  releaseLease: `update grants set lease_owner = null, lease_until = null, lease_sent_at = $3::bigint
    where id = $1 and lease_owner = $2`,
  // $1 id, $2 version, then the update's own parameters, then the event's ($n onwards).
  commitRefresh: withEvent(
    `update grants set access_token_sealed = $3, refresh_token_sealed = coalesce($4, refresh_token_sealed),
      token_type = coalesce($5, token_type), scope = coalesce($6, scope),
      access_expires_at = $7, access_lifetime_ms = $8, refresh_token_used_at = $9, next_refresh_at = $10,
      version = version + 1,
      state = case when state in ${LIVE_STATES_SQL} then 'active' else state end,
      consecutive_failures = case when state in ${LIVE_STATES_SQL} then 0 else consecutive_failures end,
      last_error = case when state in ${LIVE_STATES_SQL} then null else last_error end,
      last_error_at = case when state in ${LIVE_STATES_SQL} then null else last_error_at end,
      last_refreshed_at = $11, lease_owner = null, lease_until = null, lease_sent_at = null, updated_at = $11,
      refresh_expires_at = coalesce($12::bigint, refresh_expires_at),
      refresh_expires_reason = coalesce($13::text, refresh_expires_reason)
    where id = $1 and version = $2`,
    13,
    // A stopped grant keeps its state (invariant 2: no silent revival); its event says so.
    (outcome) => `case when g.state in ${LIVE_STATES_SQL} then ${outcome} else 'conflict' end`,
  ),
  commitRotationOnly: withEvent(
    `update grants set refresh_token_sealed = $4, refresh_token_used_at = $5, version = version + 1,
      state = 'failing', consecutive_failures = consecutive_failures + 1, last_error = $7,
      last_error_at = $8, next_refresh_at = $6, lease_owner = null, lease_until = null,
      lease_sent_at = null, updated_at = $8
    where id = $1 and version = $2 and lease_owner = $3`,
    8,
  ),
  recordFailure: withEvent(
    `update grants set state = $4, consecutive_failures = consecutive_failures + 1, last_error = $5,
      last_error_at = $8, next_refresh_at = coalesce($6::bigint, next_refresh_at),
      lease_owner = null, lease_until = null,
      lease_sent_at = case when $7::boolean then lease_sent_at else null end, updated_at = $8
    where id = $1 and version = $2 and lease_owner = $3`,
    8,
  ),
  insertEvent: `insert into refresh_events (${EVENT_COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
} as const;

/**
 * Wraps a conditional grant update so its event is inserted only when it matched, in the same
 * statement. The update's parameters are $1..$`used` ($1 the id, $2 the version); the event's follow.
 */
function withEvent(update: string, used: number, outcome = (o: string) => o): string {
  const e = (n: number) => `$${used + n}`;
  return `with g as (${update} returning *),
    e as (insert into refresh_events (${EVENT_COLUMNS})
      select g.id, $2, ${e(1)}, ${e(2)}, ${outcome(e(3))}, ${e(4)}::integer, ${e(5)}::integer, ${e(6)}, ${e(7)}, ${e(8)}::boolean from g)
    select ${selectList(grants, 'g')} from g`;
}

/** The event's values in `EVENT_COLUMNS` order, from `at`. */
function eventParams(event: RefreshEvent): unknown[] {
  const e = eventValues(event);
  return [e.at, e.trigger, e.outcome, e.durationMs, e.httpStatus, e.errorCode, e.message, e.rotated];
}

/**
 * Grants on PostgreSQL, for several replicas at once. Leases and versions are compare-and-swaps in
 * single statements: under READ COMMITTED a second claim on the same row waits for the first and
 * then re-checks its conditions on the row the first left, so one wins (invariant 2).
 */
export class PostgresGrantRepository implements GrantRepository {
  constructor(
    private readonly db: PgDb,
    private readonly pool: pg.Pool,
    private readonly sealer: Sealer,
  ) {}

  private async hot<R extends pg.QueryResultRow>(name: keyof typeof HOT, values: unknown[]) {
    return guarded(() => this.pool.query<R>({ name: `gk_${name}`, text: HOT[name], values }));
  }

  async get(id: string): Promise<StoredGrant | undefined> {
    return this.stored((await this.hot<GrantRow>('get', [id])).rows[0]);
  }

  async find(idOrLabel: string): Promise<StoredGrant | undefined> {
    return this.stored((await this.hot<GrantRow>('find', [idOrLabel])).rows[0]);
  }

  async list(): Promise<Grant[]> {
    return guarded(async () => (await this.db.select().from(grants).orderBy(asc(grants.label))).map(toGrant));
  }

  async listByClient(clientRef: string): Promise<Grant[]> {
    return guarded(async () =>
      (
        await this.db.select().from(grants).where(eq(grants.clientRef, clientRef)).orderBy(asc(grants.label))
      ).map(toGrant),
    );
  }

  async page(filter: GrantFilter, page: { after?: GrantCursor; limit: number }): Promise<Grant[]> {
    return guarded(async () =>
      (
        await this.db
          .select()
          .from(G)
          .where(grantPageSql(filter, page.after))
          .orderBy(asc(G.label), asc(G.id))
          .limit(page.limit)
      ).map(toGrant),
    );
  }

  async fleetSummary(query: FleetSummaryQuery): Promise<FleetSummary> {
    const statements = fleetSummarySql(query);
    // One repeatable-read snapshot: the counts and timelines describe one moment of the fleet.
    return guarded(() =>
      this.db.transaction(
        async (tx) => {
          const rows = async <T>(statement: SQL | undefined): Promise<T[]> =>
            statement ? ((await tx.execute(statement)).rows as T[]) : [];
          return toFleetSummary(query, {
            counts: await rows<FleetSummaryRows['counts'][number]>(statements.counts),
            planned: await rows<FleetSummaryRows['planned'][number]>(statements.planned),
            deadlines: await rows<FleetSummaryRows['deadlines'][number]>(statements.deadlines),
            outcomes: await rows<FleetSummaryRows['outcomes'][number]>(statements.outcomes),
          });
        },
        { isolationLevel: 'repeatable read', accessMode: 'read only' },
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
        .limit(page.limit),
    );
  }

  async saveConsent(input: SaveConsentInput, mayReplace?: (existing: ConsentTarget) => void): Promise<Grant> {
    return guarded(() =>
      this.db.transaction(async (tx) => {
        // Two consents for one new label would both find none and both insert: one waits here.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`grant-label:${input.label}`}))`);
        const [existing] = await tx.select().from(grants).where(eq(grants.label, input.label)).for('update');
        const write = consentWrite(input, existing, this.sealer, mayReplace);
        const [row] = write.replace
          ? await tx
              .update(grants)
              .set({ ...write.replace, version: sql`${grants.version} + 1` })
              .where(eq(grants.id, write.id))
              .returning()
          : await tx.insert(grants).values(write.insert).returning();
        if (!row) throw new Error('a consent write returned no row');
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
    const { rows } = await this.hot<GrantRow>('claim', [id, version, owner, leaseMs, inDoubtGraceMs]);
    return this.stored(rows[0]);
  }

  async leaseView(id: string): Promise<LeaseView | undefined> {
    const { rows } = await this.hot<GrantRow & { leaseRemainingMs: number | null; sentAgoMs: number | null }>(
      'leaseView',
      [id],
    );
    const row = rows[0];
    if (!row) return undefined;
    const { leaseRemainingMs, sentAgoMs, ...grant } = row;
    return { grant: toGrant(grant), leaseRemainingMs, sentAgoMs };
  }

  async markSent(
    id: string,
    version: number,
    owner: string,
    minRemainingMs: number,
  ): Promise<number | undefined> {
    const { rows } = await this.hot<{ remainingMs: number }>('markSent', [
      id,
      version,
      owner,
      minRemainingMs,
    ]);
    return rows[0]?.remainingMs;
  }

  async releaseLease(id: string, owner: string, sentAt: number | null): Promise<void> {
    await this.hot('releaseLease', [id, owner, sentAt]);
  }

  async extendLease(id: string, version: number, owner: string, leaseMs: number): Promise<boolean> {
    return (await this.hot('extendLease', [id, version, owner, leaseMs])).rowCount === 1;
  }

  async commitRefresh(
    id: string,
    version: number,
    update: TokenUpdate,
    event: RefreshEvent,
  ): Promise<CommitResult | undefined> {
    const v = commitValues(id, update, this.sealer);
    const { rows } = await this.hot<GrantRow>('commitRefresh', [
      id,
      version,
      v.access,
      v.refresh,
      v.tokenType,
      v.scope,
      v.expiresAt,
      v.lifetimeMs,
      v.usedAt,
      v.nextAt,
      event.at,
      v.refreshEndsAt,
      v.refreshEndsReason,
      ...eventParams(event),
    ]);
    return toCommitResult(this.stored(rows[0]));
  }

  async commitRotationOnly(
    id: string,
    version: number,
    owner: string,
    update: { refreshToken: string; refreshTokenUsedAt: number },
    failure: { nextRefreshAt: number; message: string },
    event: RefreshEvent,
  ): Promise<Grant | undefined> {
    const v = rotationOnlyValues(id, update, failure, this.sealer);
    const params = [id, version, owner, v.refresh, v.usedAt, v.nextAt, v.message, event.at];
    const { rows } = await this.hot<GrantRow>('commitRotationOnly', [...params, ...eventParams(event)]);
    return rows[0] && toGrant(rows[0]);
  }

  async recordFailure(
    id: string,
    version: number,
    owner: string,
    failure: FailureRecord,
    event: RefreshEvent,
  ): Promise<Grant | undefined> {
    const v = failureValues(failure);
    const params = [id, version, owner, v.state, v.message, v.nextAt, v.keepSent, event.at];
    const { rows } = await this.hot<GrantRow>('recordFailure', [...params, ...eventParams(event)]);
    return rows[0] && toGrant(rows[0]);
  }

  async recordEvent(id: string, version: number, event: RefreshEvent): Promise<void> {
    const [at, ...rest] = eventParams(event);
    await this.hot('insertEvent', [id, version, at, ...rest]);
  }

  async reviveForRetry(id: string, now: number): Promise<Grant | undefined> {
    return guarded(async () => {
      const [row] = await this.db
        .update(grants)
        .set(reviveValues(grants, now))
        .where(eq(grants.id, id))
        .returning();
      return row && toGrant(row);
    });
  }

  async setMode(id: string, mode: GrantMode, nextRefreshAt: number, now: number): Promise<Grant | undefined> {
    return guarded(async () => {
      const [row] = await this.db
        .update(grants)
        .set({ mode, nextRefreshAt, updatedAt: now })
        .where(eq(grants.id, id))
        .returning();
      return row && toGrant(row);
    });
  }

  async remove(id: string): Promise<boolean> {
    return guarded(async () => (await this.db.delete(grants).where(eq(grants.id, id))).rowCount === 1);
  }

  async recentEvents(id: string, limit: number): Promise<RecordedRefreshEvent[]> {
    return guarded(async () =>
      (
        await this.db
          .select()
          .from(refreshEvents)
          .where(eq(refreshEvents.grantId, id))
          .orderBy(desc(refreshEvents.id))
          .limit(limit)
      ).map(toEvent),
    );
  }

  async recentEventsOf(ids: readonly string[], perGrant: number): Promise<RecordedRefreshEvent[]> {
    if (ids.length === 0 || perGrant <= 0) return [];
    return guarded(async () =>
      orderEventsOf(
        ids,
        (await this.db.execute(recentEventsOfSql(ids, perGrant))).rows as unknown as RawEventRow[],
      ),
    );
  }

  async fleetStats(): Promise<FleetStats> {
    const q = fleetStatsQueries(grants, sql.raw(NOW_MS));
    return guarded(async () =>
      toFleetStats({
        byState: await this.db.select(q.byState).from(grants).groupBy(grants.state),
        earliest: (await this.db.select(q.earliest.columns).from(grants).where(q.earliest.where))[0],
        oldestUse: await this.db
          .select(q.oldestUse.columns)
          .from(grants)
          .where(q.oldestUse.where)
          .groupBy(grants.clientRef),
        inDoubt: (await this.db.select(q.inDoubt.columns).from(grants).where(q.inDoubt.where))[0],
      }),
    );
  }

  async listAlertCandidates(): Promise<AlertView[]> {
    return guarded(async () =>
      (await this.db.select(ALERT_COLUMNS).from(grants).where(alertCandidatesWhere(grants))).map(toAlertView),
    );
  }

  async listExpiring(query: ExpiryQuery): Promise<ExpiryView[]> {
    return guarded(async () =>
      (
        await this.db
          .select(expiryColumns(grants))
          .from(grants)
          .where(expiringWhere(grants, query))
          .orderBy(asc(grants.id))
      ).map(toExpiryView),
    );
  }

  async alertView(id: string): Promise<AlertView | undefined> {
    return guarded(async () => {
      const [row] = await this.db.select(ALERT_COLUMNS).from(grants).where(eq(grants.id, id));
      return row && toAlertView(row);
    });
  }

  async markAlerted(id: string, from: string | null, to: string | null): Promise<boolean> {
    return guarded(
      async () =>
        (
          await this.db
            .update(grants)
            .set({ alertedState: to })
            .where(alertedFromWhere(grants, id, from))
        ).rowCount === 1,
    );
  }

  private stored(row: GrantRow | undefined): StoredGrant | undefined {
    return toStoredGrant(row, this.sealer);
  }
}

/** The grants table as `g`, the alias the shared queries (../grant-queries.ts) name. */
const G = alias(grants, 'g');

const ALERT_COLUMNS = alertColumns(grants);
