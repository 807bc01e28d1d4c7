import type { Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRefreshQueue, type RefreshJobData } from '../../jobs/refresh-queue.js';
import { createRefreshWorker } from '../../jobs/refresh-worker.js';
import { createLogger } from '../../src/log/logger.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

// A worker that stops renewing its locks (killed, or starved of CPU) leaves its jobs stalled. A
// stalled refresh is safe to run again, and failing it would leave the grant without a job until
// the reconciler's next pass: a job that stalls twice must still run.
describe('refresh worker and stalled jobs', () => {
  let redis: PrivateRedis;
  const connections: Redis[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  });

  beforeAll(async () => {
    redis = await startPrivateRedis();
  });
  afterAll(async () => {
    for (const c of connections) c.disconnect();
    await redis?.stop();
  });

  const connect = () => {
    const c = new Redis(redis.url, { maxRetriesPerRequest: null });
    connections.push(c);
    return c;
  };
  const worker = (processor: (job: Job<RefreshJobData>) => Promise<string>) =>
    createRefreshWorker({
      connection: connect(),
      processor,
      concurrency: 1,
      logger,
      prefix: 'stalls',
      stalledAfterMs: 500,
    });

  /** A worker whose processor takes the job and never finishes; it is then closed without waiting. */
  async function stallOnce(): Promise<void> {
    let took: () => void = () => {};
    const taken = new Promise<void>((resolve) => {
      took = resolve;
    });
    const w: Worker = worker(() => {
      took();
      return new Promise<string>(() => {});
    });
    await taken;
    await w.close(true);
  }

  it('runs a job that stalled twice to completion instead of failing it', { timeout: 30_000 }, async () => {
    const queue = createRefreshQueue(connect(), 'stalls');
    await queue.add('c_stall', { grantId: 'g_stall', version: 1 }, { jobId: 'g_stall-v1-0' });
    await stallOnce();
    await stallOnce();
    const done = new Promise<string>((resolve) => {
      const last = worker(async () => 'refreshed');
      last.on('completed', (job) => resolve(job.id ?? ''));
      last.on('failed', (_job, err) => resolve(`failed: ${err.message}`));
    });
    expect(await done).toBe('g_stall-v1-0');
    expect(logs.filter((l) => /stalled/.test(String(l.msg))).map((l) => l.jobId)).toContain('g_stall-v1-0');
    await queue.close();
  });
});
