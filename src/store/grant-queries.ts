/**
 * The listing, summary and batched-event queries of the grants page, as plain SQL both engines
 * speak (SQLite and PostgreSQL): each adapter runs the same statement through its own driver, so
 * the two cannot drift apart. Only standard SQL: `cast(… as …)`, `lower(…) like … escape`, row
 * values, window functions; every value is a bound parameter.
 */
import { type SQL, sql } from 'drizzle-orm';
import { LIVE_GRANT_STATES, type RecordedRefreshEvent } from '../grants/grant.js';
import type { FleetSummary, FleetSummaryQuery, GrantCursor, GrantFilter } from '../grants/ports.js';
import { asGrantState, asOutcome, toEvent } from './rows.js';

/** The live states as an SQL list, for `state in …` in raw SQL and in drizzle's (`sql.raw`). */
export const LIVE_STATES_SQL = `(${LIVE_GRANT_STATES.map((s) => `'${s}'`).join(', ')})`;

const LIVE = sql.raw(LIVE_STATES_SQL);

const list = (values: readonly string[]) =>
  sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  );

/** `%text%` for LIKE, with LIKE's own wildcards in `text` matched literally. */
export function containsPattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * The filter's conditions on the grants table (as `g`), joined with `and`. A reader restricted to
 * no grant at all matches nothing.
 */
export function grantFilterSql(filter: GrantFilter): SQL {
  const conditions: SQL[] = [sql`1 = 1`];
  if (filter.grantIds !== null) {
    conditions.push(filter.grantIds.length === 0 ? sql`1 = 0` : sql`g.id in (${list(filter.grantIds)})`);
  }
  if (filter.labelContains) {
    conditions.push(sql`lower(g.label) like ${containsPattern(filter.labelContains)} escape '\\'`);
  }
  if (filter.clientRef !== undefined) conditions.push(sql`g.client_ref = ${filter.clientRef}`);
  if (filter.state !== undefined) conditions.push(sql`g.state = ${filter.state}`);
  return sql.join(conditions, sql` and `);
}

/**
 * The conditions of one page of grants: the filter, and past the cursor in (label, id) order. The
 * adapter selects from grants aliased `g`, ordered by label then id, so its own row mapping applies.
 */
export function grantPageSql(filter: GrantFilter, after?: GrantCursor): SQL {
  return after
    ? sql`${grantFilterSql(filter)} and (g.label, g.id) > (${after.label}, ${after.id})`
    : grantFilterSql(filter);
}

/** The newest `perGrant` events of each grant in `ids`, ranked in one pass (no query per grant). */
export function recentEventsOfSql(ids: readonly string[], perGrant: number): SQL {
  return sql`select id, "grantId", version, at, trigger, outcome, "durationMs", "httpStatus", "errorCode", message, rotated
    from (select e.id as id, e.grant_id as "grantId", e.version as version, e.at as at, e.trigger as trigger,
        e.outcome as outcome, e.duration_ms as "durationMs", e.http_status as "httpStatus",
        e.error_code as "errorCode", e.message as message, e.rotated as rotated,
        row_number() over (partition by e.grant_id order by e.id desc) as newness
      from refresh_events e where e.grant_id in (${list(ids)})) ranked
    where newness <= ${perGrant}`;
}

export interface RawEventRow extends Omit<RecordedRefreshEvent, 'id' | 'at' | 'outcome' | 'rotated'> {
  /** bigint columns: drizzle's raw PostgreSQL results bypass the pool's int8 parser. */
  id: number | string;
  at: number | string;
  outcome: string;
  /** SQLite answers 0/1, PostgreSQL a boolean. */
  rotated: boolean | number | null;
}

/** The rows of `recentEventsOfSql` in the port's order: by grant as `ids` lists them, newest first. */
export function orderEventsOf(ids: readonly string[], rows: RawEventRow[]): RecordedRefreshEvent[] {
  const place = new Map(ids.map((id, i) => [id, i]));
  return rows
    .map((r) =>
      toEvent({
        ...r,
        id: Number(r.id),
        at: Number(r.at),
        rotated: r.rotated === null ? null : Boolean(r.rotated),
      }),
    )
    .sort((a, b) => (place.get(a.grantId) ?? 0) - (place.get(b.grantId) ?? 0) || b.id - a.id);
}

/** A time's bucket from `from`, or -1 before it (integer division in both engines). */
const bucketOf = (time: SQL, from: number, bucketMs: number) =>
  sql`case when ${time} < ${from} then -1 else cast((${time} - ${from}) / ${bucketMs} as integer) end`;

/**
 * The statements of a fleet summary; `toFleetSummary` assembles their rows. Planned times are
 * written `+g.next_refresh_at` so SQLite scans the table once rather than walking the due index
 * over nearly every row; the events are read grant by grant off (grant_id, at) for the window only
 * (`cross join` fixes that order in SQLite), so the cost is the fleet and its last day, never the
 * whole history.
 */
export function fleetSummarySql(query: FleetSummaryQuery) {
  const covered = grantFilterSql({ grantIds: query.grantIds });
  const live = sql`${covered} and g.state in ${LIVE}`;
  const { aheadFrom, behindFrom, bucketMs, buckets } = query;
  const aheadUntil = aheadFrom + buckets * bucketMs;
  const deadline = sql`(g.refresh_token_used_at + k.interval_ms)`;
  const intervals = sql.join(
    query.keepAlive.map(
      (k) => sql`(cast(${k.clientRef} as text), cast(${Math.round(k.intervalMs)} as bigint))`,
    ),
    sql`, `,
  );
  return {
    counts: sql`select g.client_ref as "clientRef", g.state as state, cast(count(*) as integer) as count
      from grants g where ${covered} group by g.client_ref, g.state`,
    planned: sql`select ${bucketOf(sql`+g.next_refresh_at`, aheadFrom, bucketMs)} as bucket,
        cast(count(*) as integer) as count
      from grants g where ${live} and +g.next_refresh_at < ${aheadUntil} group by 1`,
    deadlines:
      query.keepAlive.length === 0
        ? undefined
        : sql`with k(client_ref, interval_ms) as (values ${intervals})
      select ${bucketOf(deadline, aheadFrom, bucketMs)} as bucket, cast(count(*) as integer) as count
      from grants g join k on k.client_ref = g.client_ref
      where ${live} and ${deadline} < ${aheadFrom + query.deadlineHorizonMs} group by 1`,
    outcomes: sql`select g.client_ref as "clientRef", ${bucketOf(sql`e.at`, behindFrom, bucketMs)} as bucket,
        e.outcome as outcome, cast(count(*) as integer) as count,
        cast(count(e.duration_ms) as integer) as timed,
        cast(coalesce(sum(e.duration_ms), 0) as double precision) as "totalDurationMs",
        max(e.duration_ms) as "maxDurationMs"
      from grants g cross join refresh_events e
      where g.id = e.grant_id and ${covered} and e.at >= ${behindFrom} and e.at < ${behindFrom + buckets * bucketMs}
      group by g.client_ref, 2, e.outcome`,
  };
}

interface BucketRow {
  bucket: number;
  count: number;
}

export interface FleetSummaryRows {
  counts: Array<{ clientRef: string; state: string; count: number }>;
  planned: BucketRow[];
  deadlines: BucketRow[];
  outcomes: Array<{
    clientRef: string;
    bucket: number;
    outcome: string;
    count: number;
    timed: number;
    totalDurationMs: number;
    maxDurationMs: number | null;
  }>;
}

export function toFleetSummary(query: FleetSummaryQuery, rows: FleetSummaryRows): FleetSummary {
  const inTimeline = (r: BucketRow) => r.bucket >= 0 && r.bucket < query.buckets;
  const byBucket = (r: BucketRow) => ({ bucket: r.bucket, count: r.count });
  return {
    counts: rows.counts.map((r) => ({
      clientRef: r.clientRef,
      state: asGrantState(r.state),
      count: r.count,
    })),
    overdue: rows.planned.find((r) => r.bucket === -1)?.count ?? 0,
    planned: rows.planned.filter(inTimeline).map(byBucket),
    deadlines: rows.deadlines.filter(inTimeline).map(byBucket),
    deadlinesPassed: rows.deadlines.find((r) => r.bucket === -1)?.count ?? 0,
    deadlinesWithinHorizon: rows.deadlines.reduce((n, r) => n + r.count, 0),
    outcomes: rows.outcomes.map((r) => ({
      clientRef: r.clientRef,
      bucket: r.bucket,
      outcome: asOutcome(r.outcome),
      count: r.count,
      timed: r.timed,
      totalDurationMs: r.totalDurationMs,
      maxDurationMs: r.maxDurationMs,
    })),
  };
}
