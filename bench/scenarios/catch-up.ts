import { figure, type ScenarioResult } from '../support/report.js';
import { type BenchContext, runWorkload, type WorkloadResult } from '../support/workload.js';
import { bareRequest, grantkeeperRequest, MIB, mergeCounts, withSeededDb } from './shared.js';
import { REALISTIC_LATENCY_MS } from './throughput.js';

export const CATCH_UP_TARGET_SECONDS = 45;
export const CATCH_UP_TARGET_RSS_MIB = 250;
/** At REALISTIC_LATENCY_MS the provider, not the CPU, bounds the catch-up (issue 12). */
export const REALISTIC_CATCH_UP_TARGET_SECONDS = 120;
const OUTAGE_MS = 3_600_000;

interface CatchUpRun {
  bare: WorkloadResult;
  gk: WorkloadResult;
}

/** A bare BullMQ worker and then grantkeeper, each draining `count` overdue grants from `tokenEndpoint`. */
async function measure(
  ctx: BenchContext,
  count: number,
  tokenEndpoint: string,
  suffix: string,
): Promise<CatchUpRun> {
  const bare = await runWorkload(
    ctx,
    `2 bare BullMQ catch-up${suffix}`,
    bareRequest(ctx, new Array(count).fill(0), { tokenEndpoint }),
    count,
  );
  const now = Date.now();
  const gk = await withSeededDb(
    ctx,
    { count, tokenEndpoint, plannedAt: (i) => now - ((i * 7919) % OUTAGE_MS) },
    (db) =>
      runWorkload(ctx, `2 grantkeeper catch-up${suffix}`, grantkeeperRequest(ctx, db), count, {
        profile: ctx.profile && suffix === '',
      }),
  );
  return { bare, gk };
}

const seconds = (r: WorkloadResult) => (r.lastEnd - r.startedAt) / 1000;
/** At the sample of highest RSS: how much of it V8's heap had committed, and how much was in use. */
function atPeak(r: WorkloadResult): string {
  const [, rss, heapTotal, heapUsed] = r.memory.reduce((a, b) => (b[1] > a[1] ? b : a), [0, 0, 0, 0, 0]);
  return `${rss} MiB RSS with ${heapTotal} MiB of V8 heap committed, ${heapUsed} MiB of it in use`;
}
const rssNote = (run: CatchUpRun) =>
  `RSS at start ${(run.gk.rssAtStartBytes / MIB).toFixed(0)} MiB for grantkeeper, ` +
  `${(run.bare.rssAtStartBytes / MIB).toFixed(0)} MiB for the bare worker; highest sample ${atPeak(run.gk)} ` +
  `for grantkeeper, ${atPeak(run.bare)} for the bare worker; grantkeeper's first claim ` +
  `${((run.gk.firstStart - run.gk.startedAt) / 1000).toFixed(1)} s after its start (the reconcile pass).`;

/**
 * Scenario 2: every grant overdue (up to an hour) when the service starts after an outage. Seconds
 * from service start (reconcile pass included) to the last commit, and the worker's peak RSS, at no
 * latency (our overhead) and at REALISTIC_LATENCY_MS (what a real provider leaves of it). The
 * reference is a bare BullMQ worker enqueueing and draining as many one-POST jobs.
 */
export async function catchUp(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const fast = await measure(ctx, count, ctx.tokenEndpoint, '');
  const slow = await measure(ctx, count, ctx.realisticTokenEndpoint, `, ${REALISTIC_LATENCY_MS} ms`);
  const n = count.toLocaleString('en-US');
  const rssFigure = (run: CatchUpRun, at: string) => {
    const rssMiB = run.gk.maxRssBytes / MIB;
    return figure({
      name: `peak worker RSS${at}`,
      value: rssMiB,
      unit: 'MiB',
      better: 'lower',
      reference: { name: 'bare BullMQ worker', value: run.bare.maxRssBytes / MIB },
      target: { text: `≤ ${CATCH_UP_TARGET_RSS_MIB} MiB`, holds: rssMiB <= CATCH_UP_TARGET_RSS_MIB },
      note: `both run ${ctx.compiledDir ? 'compiled, without a loader' : 'under tsx (TypeScript loader thread included)'}; ${rssNote(run)}`,
    });
  };
  const secondsFigure = (run: CatchUpRun, at: string, target: number) =>
    figure({
      name: `seconds to refresh ${n} overdue${at}`,
      value: seconds(run.gk),
      unit: 's',
      better: 'lower',
      reference: { name: `bare BullMQ + undici${at}`, value: seconds(run.bare) },
      target: { text: `≤ ${target} s at 100,000`, holds: seconds(run.gk) <= target },
    });
  const at150 = ` at ${REALISTIC_LATENCY_MS} ms`;
  return {
    id: 'catch-up',
    title: '2 Catch-up after an outage',
    figures: [
      secondsFigure(fast, '', CATCH_UP_TARGET_SECONDS),
      rssFigure(fast, ''),
      secondsFigure(slow, at150, REALISTIC_CATCH_UP_TARGET_SECONDS),
      rssFigure(slow, at150),
    ],
    ...(fast.gk.profile ? { profile: fast.gk.profile } : {}),
    details: {
      grants: count,
      concurrency: ctx.concurrency,
      failedOutcomes: mergeCounts(fast.gk.other, slow.gk.other),
      stalledJobs: {
        grantkeeper: fast.gk.stalls,
        bareBullmq: fast.bare.stalls,
        grantkeeperRealistic: slow.gk.stalls,
        bareBullmqRealistic: slow.bare.stalls,
      },
      secondsToFirstClaim: (fast.gk.firstStart - fast.gk.startedAt) / 1000,
      claimToLastCommitRatePerSecond: fast.gk.completed / ((fast.gk.lastEnd - fast.gk.firstStart) / 1000),
      memoryOverTime: { grantkeeperRealistic: slow.gk.memory, bareBullmqRealistic: slow.bare.memory },
    },
  };
}
