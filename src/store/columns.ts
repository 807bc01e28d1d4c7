/**
 * The column picks, conditions and set values both adapters' queries are built from, over either
 * dialect's tables: drizzle's operators take any dialect's columns, so each adapter passes its own
 * table and runs the query through its own builder and driver.
 */
import { type AnyColumn, and, asc, eq, gt, inArray, isNull, lt, lte, or, type SQL, sql } from 'drizzle-orm';
import { LIVE_GRANT_STATES } from '../grants/grant.js';
import type { ExpiryQuery, FleetStats, SchedulePage } from '../grants/ports.js';
import { LIVE_STATES_SQL } from './grant-queries.js';
import { asGrantState } from './rows.js';

type GrantColumn =
  | 'id'
  | 'clientRef'
  | 'label'
  | 'kind'
  | 'state'
  | 'mode'
  | 'alertedState'
  | 'version'
  | 'accessExpiresAt'
  | 'refreshTokenUsedAt'
  | 'refreshExpiresAt'
  | 'refreshExpiresReason'
  | 'nextRefreshAt'
  | 'leaseUntil'
  | 'leaseSentAt'
  | 'consecutiveFailures';

/** Either dialect's grants table, as far as these recipes read it. */
export type GrantColumns = Record<GrantColumn, AnyColumn>;

/** Some of a table's columns, each keeping its own type, so a select of them types its rows. */
function pick<G, K extends keyof G>(g: G, keys: readonly K[]): Pick<G, K> {
  const picked: Partial<Pick<G, K>> = {};
  for (const key of keys) picked[key] = g[key];
  return picked as Pick<G, K>;
}

export const liveWhere = (g: GrantColumns) => inArray(g.state, [...LIVE_GRANT_STATES]);

/** A send with no answer settled whose lease is over, measured on the store's clock `now`. */
export const inDoubtWhere = (g: GrantColumns, now: SQL) =>
  and(sql`${g.leaseSentAt} is not null`, or(isNull(g.leaseUntil), lt(g.leaseUntil, now)));

/**
 * One page of live grants due by `dueBefore`, in (next_refresh_at, id) order from past the page's
 * cursor: the order and the cursor's condition are one recipe, or a page would skip or repeat.
 */
export function schedulableQuery<G extends GrantColumns>(g: G, dueBefore: number, { after }: SchedulePage) {
  return {
    columns: pick(g, [
      'id',
      'version',
      'nextRefreshAt',
      'clientRef',
      'accessExpiresAt',
      'refreshTokenUsedAt',
    ]),
    where: and(
      liveWhere(g),
      lte(g.nextRefreshAt, dueBefore),
      // A row value, which both engines read straight off the (next_refresh_at, id) index.
      after ? sql`(${g.nextRefreshAt}, ${g.id}) > (${after.nextRefreshAt}, ${after.id})` : undefined,
    ),
    orderBy: [asc(g.nextRefreshAt), asc(g.id)],
  };
}

export const alertColumns = <G extends GrantColumns>(g: G) =>
  pick(g, ['id', 'state', 'consecutiveFailures', 'alertedState', 'leaseSentAt', 'leaseUntil']);

/** Grants an alert may be due for: not active, alerted before, or with a send in flight. */
export const alertCandidatesWhere = (g: GrantColumns) =>
  or(sql`${g.state} <> 'active'`, sql`${g.alertedState} is not null`, sql`${g.leaseSentAt} is not null`);

/** The grant `id`, while its last alerted state is still `from`. */
export const alertedFromWhere = (g: GrantColumns, id: string, from: string | null) =>
  and(eq(g.id, id), from === null ? isNull(g.alertedState) : eq(g.alertedState, from));

export const expiryColumns = <G extends GrantColumns>(g: G) =>
  pick(g, [
    'id',
    'label',
    'clientRef',
    'state',
    'kind',
    'refreshTokenUsedAt',
    'refreshExpiresAt',
    'refreshExpiresReason',
  ]);

/** Live refresh-token grants whose token ends, or falls idle past its client's limit, before `query.before`. */
export function expiringWhere(g: GrantColumns, query: ExpiryQuery) {
  const idle = query.idleLimits.map((l) =>
    and(eq(g.clientRef, l.clientRef), lt(g.refreshTokenUsedAt, query.before - l.limitMs)),
  );
  return and(
    liveWhere(g),
    eq(g.kind, 'authorization_code'),
    or(lt(g.refreshExpiresAt, query.before), ...idle),
  );
}

/** A retry: due now, and `failing` unless live already (a stopped grant is not `active` by a retry). */
export const reviveValues = (g: GrantColumns, now: number) => ({
  state: sql`case when ${g.state} in ${sql.raw(LIVE_STATES_SQL)} then ${g.state} else 'failing' end`,
  nextRefreshAt: now,
  updatedAt: now,
});

/** The fleet's figures, one select each over the grants table; `toFleetStats` assembles their rows. */
export function fleetStatsQueries<G extends GrantColumns>(g: G, now: SQL) {
  const state: G['state'] = g.state;
  const clientRef: G['clientRef'] = g.clientRef;
  return {
    /** Grouped by state. */
    byState: { state, count: sql<number>`cast(count(*) as integer)` },
    earliest: {
      columns: { at: sql<number | null>`min(${g.accessExpiresAt})`.mapWith(Number) },
      where: and(liveWhere(g), eq(g.mode, 'eager')),
    },
    /** Grouped by client. */
    oldestUse: {
      columns: { clientRef, usedAt: sql<number>`min(${g.refreshTokenUsedAt})`.mapWith(Number) },
      where: liveWhere(g),
    },
    inDoubt: { columns: { count: sql<number>`cast(count(*) as integer)` }, where: inDoubtWhere(g, now) },
  };
}

export function toFleetStats(rows: {
  byState: Array<{ state: string; count: number }>;
  earliest: { at: number | null } | undefined;
  oldestUse: Array<{ clientRef: string; usedAt: number }>;
  inDoubt: { count: number } | undefined;
}): FleetStats {
  return {
    byState: rows.byState.map((r) => ({ state: asGrantState(r.state), count: r.count })),
    earliestEagerExpiry: rows.earliest?.at ?? null,
    oldestUseByClient: rows.oldestUse,
    inDoubt: rows.inDoubt?.count ?? 0,
  };
}

/** Either dialect's consent_links table, as far as these recipes read it. */
type ConsentLinkColumns = Record<
  'id' | 'clientRef' | 'label' | 'createdAt' | 'expiresAt' | 'usedAt',
  AnyColumn
>;

/** A link as the port shows it: everything but its token's hash. */
export const linkColumns = <L extends ConsentLinkColumns>(l: L) =>
  pick(l, ['id', 'clientRef', 'label', 'createdAt', 'expiresAt', 'usedAt']);

/** The link `id` while a consent may still use it: unused, and not expired at `now`. */
export const usableLinkWhere = (l: ConsentLinkColumns, id: string, now: number) =>
  and(eq(l.id, id), isNull(l.usedAt), gt(l.expiresAt, now));
