import { commandStats, ratePerSecond } from '../support/metrics.js';
import { figure, type ScenarioResult } from '../support/report.js';
import { seedGrants } from '../support/seed.js';
import { type BenchContext, runWorkload } from '../support/workload.js';
import { removeDir } from './shared.js';

export const THROUGHPUT_TARGET_PER_SECOND = 3000;
export const THROUGHPUT_TARGET_FLOOR_SHARE = 0.6;

/**
 * Scenario 1: N grants all due now, refreshed end to end (claim, token request, commit,
 * reschedule), from the first claim to the last commit. References at the same concurrency: raw
 * undici POSTs (the limit) and a bare BullMQ worker doing one POST per job (the floor of the stack).
 */
export async function throughput(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const { tokenEndpoint, concurrency } = ctx;
  const raw = await runWorkload(
    ctx,
    '1 raw undici POSTs',
    { mode: 'raw-undici', tokenEndpoint, concurrency, count },
    count,
  );
  await ctx.redis.config('RESETSTAT');
  const bare = await runWorkload(
    ctx,
    '1 bare BullMQ + undici',
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
  const bareCommands = await commandStats(ctx.redis);
  const now = Date.now();
  const db = await seedGrants({ parentDir: ctx.tempDir, count, tokenEndpoint, plannedAt: () => now - 1000 });
  try {
    await ctx.redis.config('RESETSTAT');
    const gk = await runWorkload(
      ctx,
      '1 grantkeeper refresh',
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
    const gkCommands = await commandStats(ctx.redis);
    const rawRate = ratePerSecond(raw.completed, raw.firstStart, raw.lastEnd);
    const bareRate = ratePerSecond(bare.completed, bare.firstStart, bare.lastEnd);
    const gkRate = ratePerSecond(gk.completed, gk.firstStart, gk.lastEnd);
    const floorShare = gkRate / bareRate;
    const perJob = (stats: typeof gkCommands, n: number) =>
      stats.map((s) => ({
        command: s.command,
        callsPerJob: +(s.calls / n).toFixed(2),
        usecPerJob: +(s.usec / n).toFixed(1),
      }));
    return {
      id: 'throughput',
      title: '1 Refresh throughput',
      figures: [
        figure({
          name: 'refreshes/s vs limit',
          value: gkRate,
          unit: '/s',
          better: 'higher',
          reference: { name: 'raw undici POSTs', value: rawRate },
          target: {
            text: `≥ ${THROUGHPUT_TARGET_PER_SECOND.toLocaleString('en-US')}/s`,
            holds: gkRate >= THROUGHPUT_TARGET_PER_SECOND,
          },
        }),
        figure({
          name: 'refreshes/s vs floor',
          value: gkRate,
          unit: '/s',
          better: 'higher',
          reference: { name: 'bare BullMQ + undici', value: bareRate },
          target: {
            text: `≥ ${THROUGHPUT_TARGET_FLOOR_SHARE * 100} % of floor`,
            holds: floorShare >= THROUGHPUT_TARGET_FLOOR_SHARE,
          },
        }),
      ],
      ...(gk.profile ? { profile: gk.profile } : {}),
      details: {
        grants: count,
        concurrency,
        failedOutcomes: gk.other,
        includingReconcileRatePerSecond: ratePerSecond(gk.completed, gk.startedAt, gk.lastEnd),
        redisCommandsPerJob: {
          grantkeeper: perJob(gkCommands, count),
          bareBullmq: perJob(bareCommands, count),
        },
      },
    };
  } finally {
    removeDir(db.dataDir);
  }
}
