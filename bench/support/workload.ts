import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { benchChildUrl } from './compiled.js';
import { type ProfileSummary, summarizeCpuProfiles } from './metrics.js';
import { forkBenchChild } from './processes.js';
import type { Progress } from './progress.js';
import type { RunRequest, RunResult } from './worker-child.js';

/** What every scenario gets from the harness. */
export interface BenchContext {
  /** Private redis-server of this run; `redis` is an admin connection to it. */
  redisUrl: string;
  redis: Redis;
  /** The token endpoint child: http://127.0.0.1:PORT/token */
  tokenEndpoint: string;
  concurrency: number;
  quick: boolean;
  /** Removed when the run ends, however it ends: seeded dbs and profiles live here. */
  tempDir: string;
  /** CPU-profile the grantkeeper workloads (node --cpu-prof) and summarise what dominates. */
  profile: boolean;
  /** The measured children compiled to JavaScript (see compiled.ts); unset: they run under tsx. */
  compiledDir?: string;
  progress: Progress;
}

export type WorkloadResult = RunResult & { profile?: ProfileSummary };

/**
 * Runs one workload in a fresh worker child (see worker-child.ts) against an empty Redis, showing
 * its progress; profiles it with --cpu-prof when asked.
 */
export async function runWorkload(
  ctx: BenchContext,
  label: string,
  request: RunRequest,
  total: number,
  opts: { profile?: boolean } = {},
): Promise<WorkloadResult> {
  await ctx.redis.flushall();
  const profileDir = opts.profile ? mkdtempSync(join(ctx.tempDir, 'profile-')) : undefined;
  const child = forkBenchChild(benchChildUrl('worker-child', ctx.compiledDir), {
    ...(profileDir ? { execArgv: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
  });
  const startedAt = Date.now();
  try {
    child.on('progress', (m) => ctx.progress.update(label, Number(m.done), total, startedAt));
    const result = child.next<RunResult>('result');
    child.send({ type: 'run', ...request });
    const done = await result;
    ctx.progress.update(label, done.completed, total, startedAt);
    ctx.progress.finishLine();
    // The child exits on its own after its result, writing its profile as it does.
    await child.exited(30_000);
    const profile = profileDir ? summarizeCpuProfiles(profileDir) : undefined;
    return { ...done, ...(profile ? { profile } : {}) };
  } finally {
    await child.stop();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  }
}
