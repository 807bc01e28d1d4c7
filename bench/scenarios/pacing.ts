import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { busiestSecond } from '../../test/support/request-times.js';
import { forkBenchChild } from '../support/processes.js';
import { figure, type ScenarioResult } from '../support/report.js';
import type { SeededDb } from '../support/seed.js';
import { type BenchContext, runWorkload, runWorkloads, type WorkloadResult } from '../support/workload.js';
import type { RecordedRequests } from '../token-endpoint-server.js';
import { bareRequest, grantkeeperRequest, mergeCounts, withSeededDb } from './shared.js';

export const STORM_TARGET_REQUESTS = 10;
export const STORM_TARGET_SECONDS_AFTER = 60;
export const RATE_LIMIT_PER_SECOND = 50;
/** The reference's retries: BullMQ's exponential backoff from 1 s, enough attempts to outlast the storm. */
const BARE_RETRY = { attempts: 20, delayMs: 1000 };

/**
 * A token endpoint child of its own that records every request's arrival; with `storm`, it answers
 * 429 with Retry-After for `ms` from its first request. `use` gets its URL; the recorded times come
 * back with the result.
 */
async function withRecordingEndpoint<T>(
  storm: { ms: number; retryAfterSec: number } | undefined,
  use: (tokenEndpoint: string) => Promise<T>,
): Promise<{ result: T; requests: RecordedRequests }> {
  const args = [
    '--record',
    ...(storm ? ['--storm-ms', String(storm.ms), '--retry-after', String(storm.retryAfterSec)] : []),
  ];
  const endpoint = forkBenchChild(new URL('../token-endpoint-server.ts', import.meta.url), { args });
  try {
    const { port } = await endpoint.next<{ type: 'ready'; port: number }>('ready', 30_000);
    const result = await use(`http://127.0.0.1:${port}/token`);
    const requests = endpoint.next<RecordedRequests>('requests');
    endpoint.send({ type: 'requests' });
    return { result, requests: await requests };
  } finally {
    await endpoint.stop();
  }
}

/** Grants live (active) with a token from a refresh (version moved), and the others by state. */
function liveRefreshed(db: SeededDb): { live: number; others: Record<string, number> } {
  const sqlite = new Database(join(db.dataDir, DB_FILE_NAME), { readonly: true });
  try {
    const rows = sqlite
      .prepare(
        `SELECT state, version > 0 AS refreshed, count(*) AS n FROM grants GROUP BY state, version > 0`,
      )
      .all() as Array<{ state: string; refreshed: number; n: number }>;
    let live = 0;
    const others: Record<string, number> = {};
    for (const r of rows) {
      if (r.state === 'active' && r.refreshed) live += r.n;
      else others[`${r.state}${r.refreshed ? '' : ', not refreshed'}`] = r.n;
    }
    return { live, others };
  } finally {
    sqlite.close();
  }
}

/**
 * Scenario 7: a 429 storm. `count` grants of one client come due over the first half of a storm in
 * which the token endpoint answers every request with 429 and `Retry-After` (60 s and 30 s; 2 s and
 * 1 s with --quick), from its first request. Requests that reached it during the storm, seconds
 * from the storm's end to the last refresh, and grants live with a new token at the end. Reference:
 * a bare BullMQ worker whose jobs retry on BullMQ's own exponential backoff (from 1 s), as
 * grantkeeper did before client-wide pacing, into the same storm.
 */
export async function storm(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const stormMs = ctx.quick ? 2_000 : 60_000;
  const retryAfterSec = ctx.quick ? 1 : 30;
  // The first grant comes due once the worker is up (start, migrations, reconcile), the last one
  // halfway through the storm.
  const leadMs = ctx.quick ? 3_000 : 8_000;
  const spreadMs = stormMs / 2;
  const plan = (anchor: number) => (i: number) => anchor + Math.floor((i * spreadMs) / count);
  const stormSpec = { ms: stormMs, retryAfterSec };

  const bare = await withRecordingEndpoint(stormSpec, (tokenEndpoint) => {
    const anchor = Date.now() + leadMs;
    return runWorkload(
      ctx,
      '7 bare BullMQ, 429 storm',
      bareRequest(
        ctx,
        Array.from({ length: count }, (_, i) => plan(anchor)(i)),
        {
          tokenEndpoint,
          retry: BARE_RETRY,
        },
      ),
      count,
    );
  });
  const gk = await withRecordingEndpoint(stormSpec, (tokenEndpoint) =>
    withSeededDb(ctx, { count, tokenEndpoint, plannedAt: plan(Date.now() + leadMs) }, async (db) => {
      const run = await runWorkload(
        ctx,
        '7 grantkeeper, 429 storm',
        grantkeeperRequest(ctx, db, { finishOn: 'refreshed' }),
        count,
      );
      return { run, ...liveRefreshed(db) };
    }),
  );
  // Offsets into the storm of the requests that arrived during it.
  const inStorm = (r: RecordedRequests) => {
    const from = r.stormFrom ?? Number.POSITIVE_INFINITY;
    return r.times.filter((t) => t >= from && t < from + stormMs).map((t) => t - from);
  };
  const during = (r: RecordedRequests) => inStorm(r).length;
  const afterStorm = (run: WorkloadResult, r: RecordedRequests) =>
    (run.lastEnd - ((r.stormFrom ?? run.startedAt) + stormMs)) / 1000;
  const gkDuring = during(gk.requests);
  const gkAfter = afterStorm(gk.result.run, gk.requests);
  const window = `${stormMs / 1000} s`;
  return {
    id: '429-storm',
    title: '7 A 429 storm',
    figures: [
      figure({
        name: `requests during a ${window} storm`,
        value: gkDuring,
        unit: '',
        better: 'lower',
        reference: { name: 'bare BullMQ, exponential backoff', value: during(bare.requests) },
        target: { text: `≤ ${STORM_TARGET_REQUESTS} (probes)`, holds: gkDuring <= STORM_TARGET_REQUESTS },
        note:
          `${count.toLocaleString('en-US')} grants of one client due evenly over the storm's first ` +
          `${spreadMs / 1000} s; the token endpoint answers 429 with Retry-After: ${retryAfterSec} to every ` +
          `request for ${window} from its first one; requests counted as they arrive there, those that left ` +
          'before the first 429 was reported included (details.grantkeeperStormRequests). The reference ' +
          `retries each job on its own (attempts ${BARE_RETRY.attempts}, exponential from ${BARE_RETRY.delayMs / 1000} s).`,
      }),
      figure({
        name: 'seconds from storm end to last refresh',
        value: gkAfter,
        unit: 's',
        better: 'lower',
        reference: {
          name: 'bare BullMQ, exponential backoff',
          value: afterStorm(bare.result, bare.requests),
        },
        target: { text: `≤ ${STORM_TARGET_SECONDS_AFTER} s`, holds: gkAfter <= STORM_TARGET_SECONDS_AFTER },
      }),
      figure({
        name: 'grants live with a new token after it',
        value: gk.result.live,
        unit: '',
        better: 'higher',
        reference: { name: 'bare BullMQ jobs completed', value: bare.result.completed },
        target: {
          text: `all ${count.toLocaleString('en-US')}, none needs_reconsent or broken`,
          holds: gk.result.live === count,
        },
      }),
    ],
    details: {
      grants: count,
      stormMs,
      retryAfterSec,
      requests: { grantkeeper: gk.requests.times.length, bareBullmq: bare.requests.times.length },
      // Those sent before the first 429 was reported (due while it was on its way) against the probes.
      grantkeeperStormRequests: {
        firstSecond: inStorm(gk.requests).filter((ms) => ms < 1000).length,
        later: inStorm(gk.requests).filter((ms) => ms >= 1000).length,
      },
      grantsNotLive: gk.result.others,
      outcomes: { grantkeeper: gk.result.run.other, bareBullmq: bare.result.other },
      failedOutcomes: mergeCounts(gk.result.others),
    },
  };
}

/** Arrivals in each whole second from the first one. */
function arrivalsBySecond(times: number[]): number[] {
  const first = Math.min(...times);
  const counts: number[] = [];
  for (const t of times) {
    const second = Math.floor((t - first) / 1000);
    counts[second] = (counts[second] ?? 0) + 1;
  }
  return Array.from(counts, (n) => n ?? 0);
}

/**
 * Scenario 8: one client limited to RATE_LIMIT_PER_SECOND (its `rate` setting), `count` grants due
 * at once, two grantkeeper worker processes sharing Redis and the SQLite store. The busiest second
 * of request arrivals at the token endpoint, across both. Reference: the same two workers on a
 * client without a limit.
 */
export async function rateLimit(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const measure = (label: string, limited: boolean) =>
    withRecordingEndpoint(undefined, (tokenEndpoint) => {
      const now = Date.now();
      return withSeededDb(
        ctx,
        {
          count,
          tokenEndpoint,
          plannedAt: () => now - 1000,
          ...(limited ? { rateLimit: { requestsPerSecond: RATE_LIMIT_PER_SECOND, burst: 1 } } : {}),
        },
        async (db) => {
          const request = grantkeeperRequest(ctx, db, { finishOn: 'refreshed' });
          const runs = await runWorkloads(ctx, label, [request, request], count);
          return { runs, ...liveRefreshed(db) };
        },
      );
    });
  const free = await measure('8 2 × grantkeeper, no limit', false);
  const paced = await measure(`8 2 × grantkeeper, ${RATE_LIMIT_PER_SECOND}/s`, true);
  const busiest = busiestSecond(paced.requests.times);
  const span = (times: number[]) => ((Math.max(...times) - Math.min(...times)) / 1000).toFixed(1);
  return {
    id: 'rate-limit',
    title: '8 A client rate limit',
    figures: [
      figure({
        name: 'busiest second across 2 workers',
        value: busiest,
        unit: 'requests',
        better: 'lower',
        reference: { name: 'the same 2 workers, no limit', value: busiestSecond(free.requests.times) },
        target: {
          text: `≤ ${RATE_LIMIT_PER_SECOND} (rate ${RATE_LIMIT_PER_SECOND}/s)`,
          holds: busiest <= RATE_LIMIT_PER_SECOND,
        },
        note:
          `${count.toLocaleString('en-US')} grants of one client due at once, two worker processes on one ` +
          `SQLite store and one Redis, each at concurrency ${ctx.concurrency}; the most request arrivals ` +
          `at the token endpoint in any 1,000 ms window. With the limit: ${paced.requests.times.length} requests ` +
          `over ${span(paced.requests.times)} s, refreshes per worker ${paced.result.runs.map((r) => r.completed).join('/')}.`,
      }),
    ],
    details: {
      grants: count,
      requests: { limited: paced.requests.times.length, unlimited: free.requests.times.length },
      // Whether the pace held from the first slots on (cold workers); the busiest sliding second
      // can still be above every whole one.
      limitedArrivalsBySecond: arrivalsBySecond(paced.requests.times).slice(0, 5),
      perWorker: {
        limited: paced.result.runs.map((r) => r.completed),
        unlimited: free.result.runs.map((r) => r.completed),
      },
      live: { limited: paced.result.live, unlimited: free.result.live },
      failedOutcomes: mergeCounts(paced.result.others, free.result.others),
    },
  };
}
