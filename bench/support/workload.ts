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
  /** Another one answering after REALISTIC_LATENCY_MS, as real providers do. */
  realisticTokenEndpoint: string;
  concurrency: number;
  quick: boolean;
  /** Removed when the run ends, however it ends: seeded dbs and profiles live here. */
  tempDir: string;
  /** CPU-profile the grantkeeper workloads (node --cpu-prof) and summarise what dominates. */
  profile: boolean;
  /** The measured children compiled to JavaScript (see compiled.ts); unset: they run under tsx. */
  compiledDir?: string;
  progress: Progress;
  /** A private PostgreSQL cluster of this run (durable, see startPrivatePostgres); unset when unavailable. */
  postgres?: { createDatabase(): Promise<string> };
  /** Why there is no `postgres`: the PostgreSQL figures are skipped with this note. */
  postgresSkipped?: string;
}

export type WorkloadResult = RunResult & { profile?: ProfileSummary };

/**
 * A workload in which nothing settles for this long has lost work (a job failed with no reconciler
 * to queue it again, a child wedged): the run fails saying so, instead of waiting for ever.
 */
export const NO_PROGRESS_LIMIT_MS = 60_000;

/**
 * Rejects once the settled count has not moved for NO_PROGRESS_LIMIT_MS; `seen` feeds it each
 * progress message, `stop` ends the watch.
 */
function watchProgress(label: string, total: number) {
  let settled = -1;
  let stalls = 0;
  let timer: NodeJS.Timeout | undefined;
  let reject: (err: Error) => void = () => {};
  const stuck = new Promise<never>((_, r) => {
    reject = r;
  });
  // Only a rejection that nobody awaited any more would be unhandled; the race below awaits it.
  stuck.catch(() => {});
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `${label}: nothing settled for ${NO_PROGRESS_LIMIT_MS / 1000} s ` +
              `(${Math.max(0, settled)} of ${total} settled, ${stalls} stalled jobs): work was lost`,
          ),
        ),
      NO_PROGRESS_LIMIT_MS,
    );
  };
  arm();
  return {
    stuck,
    seen(nowSettled: number, nowStalls: number) {
      stalls = nowStalls;
      if (nowSettled !== settled) {
        settled = nowSettled;
        arm();
      }
    },
    stop: () => clearTimeout(timer),
  };
}

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
  const watch = watchProgress(label, total);
  try {
    child.on('progress', (m) => {
      watch.seen(Number(m.settled ?? m.done), Number(m.stalls ?? 0));
      ctx.progress.update(label, Number(m.done), total, startedAt);
    });
    const result = child.next<RunResult>('result');
    child.send({ type: 'run', ...request });
    const done = await Promise.race([result, watch.stuck]);
    ctx.progress.update(label, done.completed, total, startedAt);
    ctx.progress.finishLine();
    // The child exits on its own after its result, writing its profile as it does.
    await child.exited(30_000);
    const profile = profileDir ? summarizeCpuProfiles(profileDir) : undefined;
    return { ...done, ...(profile ? { profile } : {}) };
  } finally {
    watch.stop();
    await child.stop();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  }
}

/**
 * Runs several workloads at once, one child each, against one empty Redis (several grantkeeper
 * workers sharing one db and queue). Their progress is summed; once the sum of settled outcomes
 * (of refreshes, when every request finishes on `refreshed`) reaches `total`, every child is sent
 * { type: 'stop' } (a grantkeeper run ends on it; each child's own `expected` is a ceiling, not the
 * goal). Resolves with every child's result, in request order.
 */
export async function runWorkloads(
  ctx: BenchContext,
  label: string,
  requests: readonly RunRequest[],
  total: number,
): Promise<WorkloadResult[]> {
  await ctx.redis.flushall();
  const children = requests.map(() => forkBenchChild(benchChildUrl('worker-child', ctx.compiledDir)));
  const startedAt = Date.now();
  const done = requests.map(() => 0);
  const settled = requests.map(() => 0);
  const stalls = requests.map(() => 0);
  let stopSent = false;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const watch = watchProgress(label, total);
  const goal = requests.every((r) => r.mode === 'grantkeeper' && r.finishOn === 'refreshed') ? done : settled;
  try {
    const results = children.map((child) => child.next<RunResult>('result'));
    // One child failing rejects Promise.all; the others' answers must not become unhandled rejections.
    for (const r of results) r.catch(() => {});
    children.forEach((child, i) => {
      child.on('progress', (m) => {
        done[i] = Number(m.done);
        settled[i] = Number(m.settled ?? m.done);
        stalls[i] = Number(m.stalls ?? 0);
        watch.seen(sum(settled), sum(stalls));
        ctx.progress.update(label, sum(done), total, startedAt);
        if (!stopSent && sum(goal) >= total) {
          stopSent = true;
          for (const c of children) {
            // A child that already ended on its own has no channel left.
            if (c.process.connected) c.send({ type: 'stop' });
          }
        }
      });
    });
    children.forEach((child, i) => {
      child.send({ type: 'run', ...(requests[i] as RunRequest) });
    });
    const all = await Promise.race([Promise.all(results), watch.stuck]);
    ctx.progress.update(label, sum(all.map((r) => r.completed)), total, startedAt);
    ctx.progress.finishLine();
    await Promise.all(children.map((child) => child.exited(30_000)));
    return all;
  } finally {
    watch.stop();
    await Promise.all(children.map((child) => child.stop()));
  }
}
