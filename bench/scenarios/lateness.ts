import { percentiles } from '../support/metrics.js';
import { figure, type ScenarioResult } from '../support/report.js';
import { seedGrants } from '../support/seed.js';
import { type BenchContext, runWorkload } from '../support/workload.js';
import { removeDir } from './shared.js';

export const LATENESS_TARGET_P99_MS = 1000;

/**
 * Scenario 3: grants due evenly over a window (one minute; seconds with --quick), well under
 * capacity. Lateness = refresh start (after the claim) − planned time. Reference: a bare BullMQ
 * worker with one delayed job per planned time.
 */
export async function lateness(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const { tokenEndpoint, concurrency } = ctx;
  const spreadMs = ctx.quick ? 3_000 : 60_000;
  // The first grant must not be due before the worker is up (tsx start, migrations, reconcile).
  const leadMs = ctx.quick ? 4_000 : 8_000;
  const plan = (anchor: number) => (i: number) => anchor + Math.floor((i * spreadMs) / count);

  const bareAnchor = Date.now() + leadMs;
  const barePlanned = Array.from({ length: count }, (_, i) => plan(bareAnchor)(i));
  const bare = await runWorkload(
    ctx,
    '3 bare BullMQ delayed jobs',
    {
      mode: 'bare-bullmq',
      redisUrl: ctx.redisUrl,
      tokenEndpoint,
      concurrency,
      plannedAt: barePlanned,
      reportStarts: true,
    },
    count,
  );
  const bareLateness = (bare.starts ?? []).map(([i, start]) => start - (barePlanned[Number(i)] as number));

  const db = await seedGrants({
    parentDir: ctx.tempDir,
    count,
    tokenEndpoint,
    plannedAt: plan(Date.now() + leadMs),
  });
  try {
    const gk = await runWorkload(
      ctx,
      '3 grantkeeper due over a window',
      {
        mode: 'grantkeeper',
        dataDir: db.dataDir,
        key: db.key,
        redisUrl: ctx.redisUrl,
        concurrency,
        expected: count,
        reportStarts: true,
      },
      count,
    );
    const planned = new Map(db.grantIds.map((id, i) => [id, db.plannedAt[i] as number]));
    const gkLateness = (gk.starts ?? []).map(([id, start]) => start - (planned.get(String(id)) as number));
    const ours = percentiles(gkLateness);
    const ref = percentiles(bareLateness);
    return {
      id: 'lateness',
      title: '3 Lateness',
      figures: [
        figure({
          name: 'p50 start − planned',
          value: ours.p50,
          unit: 'ms',
          better: 'lower',
          reference: { name: 'bare BullMQ delayed job', value: ref.p50 },
        }),
        figure({
          name: 'p99 start − planned',
          value: ours.p99,
          unit: 'ms',
          better: 'lower',
          reference: { name: 'bare BullMQ delayed job', value: ref.p99 },
          target: { text: `≤ ${LATENESS_TARGET_P99_MS} ms`, holds: ours.p99 <= LATENESS_TARGET_P99_MS },
        }),
        figure({
          name: 'max start − planned',
          value: ours.max,
          unit: 'ms',
          better: 'lower',
          reference: { name: 'bare BullMQ delayed job', value: ref.max },
        }),
      ],
      details: {
        grants: count,
        spreadMs,
        ratePerSecond: count / (spreadMs / 1000),
        serviceReadyAfterFirstDueMs: Math.max(0, gk.startedAt - (db.plannedAt[0] as number)),
        earliestMs: { grantkeeper: Math.min(...gkLateness), bareBullmq: Math.min(...bareLateness) },
        failedOutcomes: gk.other,
      },
    };
  } finally {
    removeDir(db.dataDir);
  }
}
