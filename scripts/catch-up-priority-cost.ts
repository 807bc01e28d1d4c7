/**
 * What ranking a catch-up costs (issue 12): N overdue jobs queued as the reconciler does (addBulk,
 * batches of 1000), unranked and with the catch-up priorities, then drained by a worker with a
 * no-op processor. Prints queueing time, Redis memory per job and drain rate for both. Runs its
 * own redis-server on a free port: `node --import tsx scripts/catch-up-priority-cost.ts [N]`.
 */
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { createRefreshQueue, REFRESH_QUEUE_NAME, refreshJobId } from '../jobs/refresh-queue.js';
import { catchUpPriority } from '../src/policy/catch-up-order.js';
import { startPrivateRedis } from '../test/support/private-redis.js';

const N = Number(process.argv[2] ?? 50_000);
const BATCH = 1000;
const CONCURRENCY = 64;

async function measure(redisUrl: string, ranked: boolean) {
  const prefix = ranked ? 'gk-ranked' : 'gk-plain';
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = createRefreshQueue(connection, prefix);
  const now = Date.now();
  const before = Number(/used_memory:(\d+)/.exec(await connection.info('memory'))?.[1]);
  const queuedFrom = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    const jobs = [];
    for (let j = i; j < Math.min(N, i + BATCH); j++) {
      const id = `g_${j.toString(36).padStart(12, '0')}`;
      const expiresAt = now + ((j * 7919) % 7200) * 1000 - 3600_000;
      jobs.push({
        name: 'c_bench',
        data: { grantId: id, version: 1 },
        opts: {
          jobId: refreshJobId(id, 1, now - 1000),
          ...(ranked ? { priority: catchUpPriority(expiresAt, now) } : {}),
        },
      });
    }
    await queue.addBulk(jobs);
  }
  const queuedMs = performance.now() - queuedFrom;
  const after = Number(/used_memory:(\d+)/.exec(await connection.info('memory'))?.[1]);
  let done = 0;
  let allDone: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const drainedFrom = performance.now();
  const worker = new Worker(
    REFRESH_QUEUE_NAME,
    async () => {
      if (++done === N) allDone();
    },
    { connection: { url: redisUrl }, prefix, concurrency: CONCURRENCY, removeOnComplete: { count: 0 } },
  );
  await finished;
  await worker.close();
  const drainMs = performance.now() - drainedFrom;
  await queue.close();
  connection.disconnect();
  return { queuedMs, bytesPerJob: (after - before) / N, drainPerSec: (N / drainMs) * 1000 };
}

const redis = await startPrivateRedis();
try {
  const plain = await measure(redis.url, false);
  const ranked = await measure(redis.url, true);
  const row = (name: string, r: typeof plain) =>
    `${name.padEnd(8)} queue ${r.queuedMs.toFixed(0).padStart(6)} ms  ${r.bytesPerJob.toFixed(0).padStart(5)} B/job  drain ${r.drainPerSec.toFixed(0).padStart(6)} jobs/s`;
  console.log(`${N} overdue jobs, drained at concurrency ${CONCURRENCY}`);
  console.log(row('unranked', plain));
  console.log(row('ranked', ranked));
} finally {
  await redis.stop();
}
