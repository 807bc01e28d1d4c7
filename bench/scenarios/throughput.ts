import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { commandStats, ratePerSecond } from '../support/metrics.js';
import { type Figure, figure, type ScenarioResult } from '../support/report.js';
import { type SeededDb, seedGrants } from '../support/seed.js';
import { type BenchContext, runWorkload, runWorkloads } from '../support/workload.js';
import { bareRequest, grantkeeperRequest, MIB, mergeCounts, removeDir, withSeededDb } from './shared.js';

export const THROUGHPUT_TARGET_PER_SECOND = 3000;
export const THROUGHPUT_TARGET_FLOOR_SHARE = 0.6;
/** PostgreSQL refreshes/s as a share of SQLite's, one worker each at the same concurrency. */
export const THROUGHPUT_TARGET_POSTGRES_SHARE = 0.7;
/** Two worker processes on one PostgreSQL db against one. */
export const THROUGHPUT_TARGET_TWO_WORKERS = 1.6;
/** Token endpoint latency of the realistic figures: real providers answer in 100–300 ms. */
export const REALISTIC_LATENCY_MS = 150;
export const REALISTIC_TARGET_PER_SECOND = 1000;
export const REALISTIC_TARGET_BARE_SHARE = 0.7;

/**
 * Scenario 1: N grants all due now, refreshed end to end (claim, token request, commit,
 * reschedule), from the first claim to the last commit. References at the same concurrency: raw
 * undici POSTs (the limit) and a bare BullMQ worker doing one POST per job (the floor of the stack).
 * Then the same count on PostgreSQL (one worker, against the SQLite figure) and on a fresh
 * PostgreSQL db with two worker processes at once (against the one-worker PostgreSQL figure).
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
    bareRequest(ctx, new Array(count).fill(0)),
    count,
  );
  const bareCommands = await commandStats(ctx.redis);
  const now = Date.now();
  return withSeededDb(ctx, { count, tokenEndpoint, plannedAt: () => now - 1000 }, async (db) => {
    await ctx.redis.config('RESETSTAT');
    const gk = await runWorkload(ctx, '1 grantkeeper refresh', grantkeeperRequest(ctx, db), count, {
      profile: ctx.profile,
    });
    const gkCommands = await commandStats(ctx.redis);
    const rawRate = ratePerSecond(raw.completed, raw.firstStart, raw.lastEnd);
    const bareRate = ratePerSecond(bare.completed, bare.firstStart, bare.lastEnd);
    const gkRate = ratePerSecond(gk.completed, gk.firstStart, gk.lastEnd);
    const floorShare = gkRate / bareRate;
    const realistic = await measureRealistic(ctx, count);
    const pg = await measurePostgres(ctx, count, gkRate);
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
        ...realistic.figures,
        ...pg.figures,
      ],
      ...(gk.profile ? { profile: gk.profile } : {}),
      details: {
        grants: count,
        concurrency,
        failedOutcomes: mergeCounts(gk.other, realistic.failedOutcomes, ...pg.failedOutcomes),
        stalledJobs: {
          grantkeeper: gk.stalls,
          bareBullmq: bare.stalls,
          ...realistic.stalls,
        },
        ...(pg.details ? { postgres: pg.details } : {}),
        includingReconcileRatePerSecond: ratePerSecond(gk.completed, gk.startedAt, gk.lastEnd),
        redisCommandsPerJob: {
          grantkeeper: perJob(gkCommands, count),
          bareBullmq: perJob(bareCommands, count),
        },
      },
    };
  });
}

/**
 * The same refreshes against the endpoint that answers after REALISTIC_LATENCY_MS, with the
 * service's default settings, next to a bare BullMQ + undici worker at the same concurrency and
 * latency: what bounds a worker once the provider, not the CPU, takes the time.
 */
async function measureRealistic(
  ctx: BenchContext,
  count: number,
): Promise<{ figures: Figure[]; failedOutcomes: Record<string, number>; stalls: Record<string, number> }> {
  const { realisticTokenEndpoint: tokenEndpoint, concurrency } = ctx;
  const bare = await runWorkload(
    ctx,
    `1 bare BullMQ + undici, ${REALISTIC_LATENCY_MS} ms`,
    bareRequest(ctx, new Array(count).fill(0), { tokenEndpoint }),
    count,
  );
  const now = Date.now();
  return withSeededDb(ctx, { count, tokenEndpoint, plannedAt: () => now - 1000 }, async (db) => {
    const gk = await runWorkload(
      ctx,
      `1 grantkeeper refresh, ${REALISTIC_LATENCY_MS} ms`,
      grantkeeperRequest(ctx, db),
      count,
    );
    const gkRate = ratePerSecond(gk.completed, gk.firstStart, gk.lastEnd);
    const bareRate = ratePerSecond(bare.completed, bare.firstStart, bare.lastEnd);
    return {
      figures: [
        figure({
          name: `refreshes/s at ${REALISTIC_LATENCY_MS} ms latency`,
          value: gkRate,
          unit: '/s',
          better: 'higher',
          reference: { name: `bare BullMQ + undici, ${REALISTIC_LATENCY_MS} ms`, value: bareRate },
          target: {
            text: `≥ ${REALISTIC_TARGET_PER_SECOND.toLocaleString('en-US')}/s and ≥ ${REALISTIC_TARGET_BARE_SHARE * 100} % of bare`,
            holds: gkRate >= REALISTIC_TARGET_PER_SECOND && gkRate / bareRate >= REALISTIC_TARGET_BARE_SHARE,
          },
          note:
            `a second token endpoint answering after ${REALISTIC_LATENCY_MS} ms; both workers at concurrency ` +
            `${concurrency}, grantkeeper with the service defaults; peak RSS ${(gk.maxRssBytes / MIB).toFixed(0)} MiB ` +
            `for grantkeeper, ${(bare.maxRssBytes / MIB).toFixed(0)} MiB for the bare worker.`,
        }),
      ],
      failedOutcomes: gk.other,
      stalls: { grantkeeperRealistic: gk.stalls, bareBullmqRealistic: bare.stalls },
    };
  });
}

/**
 * The PostgreSQL figures: `count` grants refreshed by one worker, then by two worker processes at
 * once on a freshly seeded db, each at the context's concurrency. The two-worker rate is every
 * commit of both over the span from the earliest first claim to the latest last commit.
 */
async function measurePostgres(
  ctx: BenchContext,
  count: number,
  sqliteRate: number,
): Promise<{
  figures: Figure[];
  failedOutcomes: Array<Record<string, number>>;
  details?: Record<string, unknown>;
}> {
  const { postgres, concurrency } = ctx;
  const names = { share: 'PostgreSQL refreshes/s vs SQLite', two: '2 workers on PostgreSQL vs 1' };
  const shareTarget = `≥ ${THROUGHPUT_TARGET_POSTGRES_SHARE * 100} % of SQLite`;
  const twoTarget = `≥ ${THROUGHPUT_TARGET_TWO_WORKERS}× one worker`;
  if (!postgres) {
    const note = `PostgreSQL figures skipped: ${ctx.postgresSkipped ?? 'no PostgreSQL cluster'}`;
    return {
      figures: [
        figure({
          name: names.share,
          value: null,
          unit: '/s',
          better: 'higher',
          reference: { name: 'SQLite, 1 worker', value: sqliteRate },
          target: { text: shareTarget, holds: false },
          note,
        }),
        figure({
          name: names.two,
          value: null,
          unit: '/s',
          better: 'higher',
          target: { text: twoTarget, holds: false },
          note,
        }),
      ],
      failedOutcomes: [],
    };
  }
  const request = (dataDir: string, db: SeededDb) => grantkeeperRequest(ctx, db, { dataDir });
  const seed = async () => {
    const now = Date.now();
    return seedGrants({
      parentDir: ctx.tempDir,
      count,
      tokenEndpoint: ctx.tokenEndpoint,
      plannedAt: () => now - 1000,
      databaseUrl: await postgres.createDatabase(),
    });
  };
  const one = await seed();
  let single: Awaited<ReturnType<typeof runWorkload>>;
  try {
    single = await runWorkload(ctx, '1 grantkeeper on PostgreSQL', request(one.dataDir, one), count);
  } finally {
    removeDir(one.dataDir);
  }
  const two = await seed();
  const secondDir = mkdtempSync(join(ctx.tempDir, 'pg-'));
  let pair: Awaited<ReturnType<typeof runWorkloads>>;
  try {
    pair = await runWorkloads(
      ctx,
      '1 2 × grantkeeper on PostgreSQL',
      [two.dataDir, secondDir].map((dir) => request(dir, two)),
      count,
    );
  } finally {
    removeDir(two.dataDir);
    removeDir(secondDir);
  }
  const singleRate = ratePerSecond(single.completed, single.firstStart, single.lastEnd);
  const pairCompleted = pair.reduce((n, r) => n + r.completed, 0);
  const pairRate = ratePerSecond(
    pairCompleted,
    Math.min(...pair.map((r) => r.firstStart)),
    Math.max(...pair.map((r) => r.lastEnd)),
  );
  return {
    figures: [
      figure({
        name: names.share,
        value: singleRate,
        unit: '/s',
        better: 'higher',
        reference: { name: 'SQLite, 1 worker', value: sqliteRate },
        target: { text: shareTarget, holds: singleRate / sqliteRate >= THROUGHPUT_TARGET_POSTGRES_SHARE },
        note:
          'a private PostgreSQL cluster on this machine with fsync and full-page writes on and ' +
          'synchronous_commit=off (commits not fsynced one by one, as SQLite WAL with synchronous=NORMAL); ' +
          `the same ${count.toLocaleString('en-US')} grants, one worker at concurrency ${concurrency}.`,
      }),
      figure({
        name: names.two,
        value: pairRate,
        unit: '/s',
        better: 'higher',
        reference: { name: 'PostgreSQL, 1 worker', value: singleRate },
        target: { text: twoTarget, holds: pairRate / singleRate >= THROUGHPUT_TARGET_TWO_WORKERS },
        note:
          `two worker processes at once on one freshly seeded db, each at concurrency ${concurrency}, ` +
          'stopped once their commits reach the count; rate = all commits / (latest last commit − ' +
          'earliest first claim).',
      }),
    ],
    failedOutcomes: [single.other, ...pair.map((r) => r.other)],
    details: {
      oneWorker: { completed: single.completed, ratePerSecond: singleRate, maxRssBytes: single.maxRssBytes },
      twoWorkers: pair.map((r) => ({
        completed: r.completed,
        ratePerSecond: ratePerSecond(r.completed, r.firstStart, r.lastEnd),
        maxRssBytes: r.maxRssBytes,
      })),
    },
  };
}
