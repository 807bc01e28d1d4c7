import { percentiles } from '../support/metrics.js';
import type { ScenarioResult } from '../support/report.js';
import { type BenchContext, runWorkload } from '../support/workload.js';
import { bareRequest, grantkeeperRequest, percentileFigures, withSeededDb } from './shared.js';

export const LATENESS_TARGET_P99_MS = 1000;

/**
 * Scenario 3: grants due evenly over a window (one minute; seconds with --quick), well under
 * capacity. Lateness = refresh start (after the claim) − planned time. Reference: a bare BullMQ
 * worker with one delayed job per planned time.
 */
export async function lateness(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const { tokenEndpoint } = ctx;
  const spreadMs = ctx.quick ? 3_000 : 60_000;
  // The first grant must not be due before the worker is up (tsx start, migrations, reconcile).
  const leadMs = ctx.quick ? 4_000 : 8_000;
  const plan = (anchor: number) => (i: number) => anchor + Math.floor((i * spreadMs) / count);

  const bareAnchor = Date.now() + leadMs;
  const barePlanned = Array.from({ length: count }, (_, i) => plan(bareAnchor)(i));
  const bare = await runWorkload(
    ctx,
    '3 bare BullMQ delayed jobs',
    bareRequest(ctx, barePlanned, { reportStarts: true }),
    count,
  );
  const bareLateness = (bare.starts ?? []).map(([i, start]) => start - (barePlanned[Number(i)] as number));

  return withSeededDb(ctx, { count, tokenEndpoint, plannedAt: plan(Date.now() + leadMs) }, async (db) => {
    const gk = await runWorkload(
      ctx,
      '3 grantkeeper due over a window',
      grantkeeperRequest(ctx, db, { reportStarts: true }),
      count,
    );
    const planned = new Map(db.grantIds.map((id, i) => [id, db.plannedAt[i] as number]));
    const gkLateness = (gk.starts ?? []).map(([id, start]) => start - (planned.get(String(id)) as number));
    const ours = percentiles(gkLateness);
    const ref = percentiles(bareLateness);
    return {
      id: 'lateness',
      title: '3 Lateness',
      figures: percentileFigures(ours, ref, {
        what: 'start − planned',
        unit: 'ms',
        referenceName: 'bare BullMQ delayed job',
        targets: {
          p99: { text: `≤ ${LATENESS_TARGET_P99_MS} ms`, holds: ours.p99 <= LATENESS_TARGET_P99_MS },
        },
      }),
      details: {
        grants: count,
        spreadMs,
        ratePerSecond: count / (spreadMs / 1000),
        serviceReadyAfterFirstDueMs: Math.max(0, gk.startedAt - (db.plannedAt[0] as number)),
        earliestMs: { grantkeeper: Math.min(...gkLateness), bareBullmq: Math.min(...bareLateness) },
        failedOutcomes: gk.other,
      },
    };
  });
}
