import { figure, type ScenarioResult } from '../support/report.js';
import { seedGrants } from '../support/seed.js';
import { type BenchContext, runWorkload } from '../support/workload.js';
import { MIB, removeDir } from './shared.js';

export const CATCH_UP_TARGET_SECONDS = 45;
export const CATCH_UP_TARGET_RSS_MIB = 250;
const OUTAGE_MS = 3_600_000;

/**
 * Scenario 2: every grant overdue (up to an hour) when the service starts after an outage. Seconds
 * from service start (reconcile pass included) to the last commit, and the worker's peak RSS. The
 * reference is a bare BullMQ worker enqueueing and draining as many one-POST jobs.
 */
export async function catchUp(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const { tokenEndpoint, concurrency } = ctx;
  const bare = await runWorkload(
    ctx,
    '2 bare BullMQ catch-up',
    {
      mode: 'bare-bullmq',
      redisUrl: ctx.redisUrl,
      tokenEndpoint,
      concurrency,
      plannedAt: new Array(count).fill(0),
      reportStarts: false,
    },
    count,
  );
  const now = Date.now();
  const db = await seedGrants({
    parentDir: ctx.tempDir,
    count,
    tokenEndpoint,
    plannedAt: (i) => now - ((i * 7919) % OUTAGE_MS),
  });
  try {
    const gk = await runWorkload(
      ctx,
      '2 grantkeeper catch-up',
      {
        mode: 'grantkeeper',
        dataDir: db.dataDir,
        key: db.key,
        redisUrl: ctx.redisUrl,
        concurrency,
        expected: count,
        reportStarts: false,
      },
      count,
      { profile: ctx.profile },
    );
    const seconds = (gk.lastEnd - gk.startedAt) / 1000;
    const bareSeconds = (bare.lastEnd - bare.startedAt) / 1000;
    const rssMiB = gk.maxRssBytes / MIB;
    return {
      id: 'catch-up',
      title: '2 Catch-up after an outage',
      figures: [
        figure({
          name: `seconds to refresh ${count.toLocaleString('en-US')} overdue`,
          value: seconds,
          unit: 's',
          better: 'lower',
          reference: { name: 'bare BullMQ + undici', value: bareSeconds },
          target: {
            text: `≤ ${CATCH_UP_TARGET_SECONDS} s at 100,000`,
            holds: seconds <= CATCH_UP_TARGET_SECONDS,
          },
        }),
        figure({
          name: 'peak worker RSS',
          value: rssMiB,
          unit: 'MiB',
          better: 'lower',
          reference: { name: 'bare BullMQ worker', value: bare.maxRssBytes / MIB },
          target: { text: `≤ ${CATCH_UP_TARGET_RSS_MIB} MiB`, holds: rssMiB <= CATCH_UP_TARGET_RSS_MIB },
          note: `both run ${ctx.compiledDir ? 'compiled, without a loader' : 'under tsx (TypeScript loader thread included)'}; RSS at start ${(gk.rssAtStartBytes / MIB).toFixed(0)} MiB for grantkeeper, ${(bare.rssAtStartBytes / MIB).toFixed(0)} MiB for the bare worker.`,
        }),
      ],
      ...(gk.profile ? { profile: gk.profile } : {}),
      details: {
        grants: count,
        concurrency,
        failedOutcomes: gk.other,
        stalledJobs: { grantkeeper: gk.stalls, bareBullmq: bare.stalls },
        secondsToFirstClaim: (gk.firstStart - gk.startedAt) / 1000,
        claimToLastCommitRatePerSecond: gk.completed / ((gk.lastEnd - gk.firstStart) / 1000),
      },
    };
  } finally {
    removeDir(db.dataDir);
  }
}
