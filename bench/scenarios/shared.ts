import { rmSync } from 'node:fs';
import type { Percentiles } from '../support/metrics.js';
import { type Figure, figure } from '../support/report.js';
import { type SeededDb, type SeedOptions, seedGrants } from '../support/seed.js';
import type { RunRequest } from '../support/worker-child.js';
import type { BenchContext } from '../support/workload.js';

export const MIB = 2 ** 20;

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

type BareRequest = Extract<RunRequest, { mode: 'bare-bullmq' }>;
type GrantkeeperRequest = Extract<RunRequest, { mode: 'grantkeeper' }>;

/** The reference worker: a bare BullMQ worker, one job per planned time (0: due now), one POST each. */
export function bareRequest(
  ctx: BenchContext,
  plannedAt: number[],
  opts: Partial<Omit<BareRequest, 'mode' | 'plannedAt'>> = {},
): BareRequest {
  return {
    mode: 'bare-bullmq',
    redisUrl: ctx.redisUrl,
    tokenEndpoint: ctx.tokenEndpoint,
    concurrency: ctx.concurrency,
    plannedAt,
    reportStarts: false,
    ...opts,
  };
}

/** The grantkeeper worker (the real refresh service, the service's defaults) on a seeded db. */
export function grantkeeperRequest(
  ctx: BenchContext,
  db: SeededDb,
  opts: Partial<Omit<GrantkeeperRequest, 'mode' | 'key'>> = {},
): GrantkeeperRequest {
  return {
    mode: 'grantkeeper',
    dataDir: db.dataDir,
    ...(db.databaseUrl ? { databaseUrl: db.databaseUrl } : {}),
    key: db.key,
    redisUrl: ctx.redisUrl,
    concurrency: ctx.concurrency,
    expected: db.grantIds.length,
    reportStarts: false,
    ...opts,
  };
}

/** Seeds a fresh db into the run's temp folder, hands it to `use`, and removes it however that ends. */
export async function withSeededDb<T>(
  ctx: BenchContext,
  opts: Omit<SeedOptions, 'parentDir'>,
  use: (db: SeededDb) => Promise<T>,
): Promise<T> {
  const db = await seedGrants({ parentDir: ctx.tempDir, ...opts });
  try {
    return await use(db);
  } finally {
    removeDir(db.dataDir);
  }
}

/** Sums outcome counts by name. */
export function mergeCounts(...counts: Array<Record<string, number>>): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const c of counts) for (const [k, v] of Object.entries(c)) merged[k] = (merged[k] ?? 0) + v;
  return merged;
}

/** p50, p99 and max of grantkeeper's distribution next to the reference's; targets by figure. */
export function percentileFigures(
  ours: Percentiles,
  ref: Percentiles,
  opts: {
    /** The measured quantity, e.g. `start − planned` or `latency`. */
    what: string;
    unit: string;
    referenceName: string;
    include?: ReadonlyArray<keyof Percentiles>;
    targets?: Partial<Record<keyof Percentiles, { text: string; holds: boolean }>>;
  },
): Figure[] {
  return (opts.include ?? (['p50', 'p99', 'max'] as const)).map((p) =>
    figure({
      name: `${p} ${opts.what}`,
      value: ours[p],
      unit: opts.unit,
      better: 'lower',
      reference: { name: opts.referenceName, value: ref[p] },
      ...(opts.targets?.[p] ? { target: opts.targets[p] } : {}),
    }),
  );
}
