import { GRANT_STATES, type GrantState, type RefreshOutcome } from '../../grants/grant.js';
import type { Client, FleetSummary, FleetSummaryQuery } from '../../grants/ports.js';
import type { ClientCondition } from '../../pacing/client-pacer.js';
import type { FleetView } from '../schemas.js';

export const HOUR_MS = 3_600_000;
const HOURS = 24;
const WEEK_MS = 7 * 24 * HOUR_MS;

/** Outcomes that are neither a refresh nor a failure: another holder won, or a stopped grant answered. */
const NEUTRAL: ReadonlySet<RefreshOutcome> = new Set(['overtaken', 'conflict']);

/** What GET /v1/fleet asks the store: this hour and the next 23 ahead, the last 24 hours behind. */
export function fleetQuery(
  now: number,
  grantIds: readonly string[] | null,
  clients: Client[],
): FleetSummaryQuery {
  const thisHour = now - (now % HOUR_MS);
  return {
    grantIds,
    aheadFrom: thisHour,
    behindFrom: thisHour - (HOURS - 1) * HOUR_MS,
    bucketMs: HOUR_MS,
    buckets: HOURS,
    keepAlive: clients.map((c) => ({ clientRef: c.id, intervalMs: c.profile.keepAliveIntervalSec * 1000 })),
    deadlineHorizonMs: WEEK_MS,
  };
}

const hours = <T>(fill: T): T[] => Array.from({ length: HOURS }, () => fill);

function stateCounts(counts: Map<GrantState, number>) {
  return GRANT_STATES.filter((s) => counts.has(s)).map((state) => ({ state, count: counts.get(state) ?? 0 }));
}

/** The store's aggregates as the page charts them: per hour arrays, clients by name. */
export function toFleetView(
  summary: FleetSummary,
  query: FleetSummaryQuery,
  clients: Client[],
  now: number,
  /** The clients' pacing conditions (only degraded ones need be present). */
  conditions: ReadonlyMap<string, ClientCondition> = new Map(),
): FleetView {
  const byId = new Map(clients.map((c) => [c.id, c]));
  const name = (clientRef: string) => byId.get(clientRef)?.name ?? clientRef;
  const add = <K>(map: Map<K, number>, key: K, n: number) => map.set(key, (map.get(key) ?? 0) + n);

  const states = new Map<GrantState, number>();
  const perClient = new Map<string, Map<GrantState, number>>();
  for (const c of summary.counts) {
    add(states, c.state, c.count);
    const counts = perClient.get(c.clientRef) ?? new Map<GrantState, number>();
    perClient.set(c.clientRef, add(counts, c.state, c.count));
  }

  const perHour = (rows: Array<{ bucket: number; count: number }>) => {
    const line = hours(0);
    for (const r of rows) line[r.bucket] = r.count;
    return line;
  };

  const outcomes = new Map<
    string,
    {
      refreshed: number[];
      failed: number[];
      timed: number[];
      total: number[];
      max: Array<number | null>;
      by: Map<RefreshOutcome, number>;
    }
  >();
  for (const o of summary.outcomes) {
    let line = outcomes.get(o.clientRef);
    if (!line) {
      line = {
        refreshed: hours(0),
        failed: hours(0),
        timed: hours(0),
        total: hours(0),
        max: hours(null),
        by: new Map(),
      };
      outcomes.set(o.clientRef, line);
    }
    add(line.by, o.outcome, o.count);
    if (o.outcome === 'refreshed') line.refreshed[o.bucket] = (line.refreshed[o.bucket] ?? 0) + o.count;
    else if (!NEUTRAL.has(o.outcome)) line.failed[o.bucket] = (line.failed[o.bucket] ?? 0) + o.count;
    line.timed[o.bucket] = (line.timed[o.bucket] ?? 0) + o.timed;
    line.total[o.bucket] = (line.total[o.bucket] ?? 0) + o.totalDurationMs;
    if (o.maxDurationMs !== null) line.max[o.bucket] = Math.max(line.max[o.bucket] ?? 0, o.maxDurationMs);
  }

  const deadlinesPerHour = perHour(summary.deadlines);
  return {
    now: new Date(now).toISOString(),
    hour_ms: HOUR_MS,
    ahead_from: new Date(query.aheadFrom).toISOString(),
    behind_from: new Date(query.behindFrom).toISOString(),
    total: [...states.values()].reduce((n, c) => n + c, 0),
    by_state: stateCounts(states),
    by_client: [...perClient]
      .map(([clientRef, counts]) => ({
        client: name(clientRef),
        provider: byId.get(clientRef)?.profile.kind ?? null,
        total: [...counts.values()].reduce((n, c) => n + c, 0),
        by_state: stateCounts(counts),
        degraded: conditions.get(clientRef)?.reason ?? null,
      }))
      .sort((a, b) => a.client.localeCompare(b.client)),
    planned: { overdue: summary.overdue, per_hour: perHour(summary.planned) },
    deadlines: {
      per_hour: deadlinesPerHour,
      within_24h: summary.deadlinesPassed + deadlinesPerHour.reduce((n, c) => n + c, 0),
      within_7d: summary.deadlinesWithinHorizon,
    },
    outcomes: [...outcomes]
      .map(([clientRef, line]) => ({
        client: name(clientRef),
        by_outcome: [...line.by].map(([outcome, count]) => ({ outcome, count })),
        refreshed: line.refreshed,
        failed: line.failed,
        avg_ms: line.timed.map((n, i) => (n === 0 ? null : Math.round((line.total[i] ?? 0) / n))),
        max_ms: line.max,
      }))
      .sort((a, b) => a.client.localeCompare(b.client)),
  };
}
