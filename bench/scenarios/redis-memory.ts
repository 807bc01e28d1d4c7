import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import {
  createRefreshQueue,
  DEFAULT_QUEUE_PREFIX,
  REFRESH_QUEUE_NAME,
  refreshJobId,
} from '../../jobs/refresh-queue.js';
import { QueueScheduler } from '../../jobs/refresh-scheduler.js';
import type { SchedulableGrant } from '../../src/grants/ports.js';
import { newId } from '../../src/store/ids.js';
import { usedMemory } from '../support/metrics.js';
import { figure, type ScenarioResult } from '../support/report.js';
import type { BenchContext } from '../support/workload.js';
import { MIB } from './shared.js';

export const REDIS_TARGET_BYTES_PER_GRANT = 400;
export const REDIS_TARGET_MIB_AT_MILLION = 400;
const CHUNK = 5000;
const HORIZON_MS = 6 * 3_600_000;

type Fill = (connection: Redis, add: (n: number) => void) => Promise<void>;

interface Measured {
  bytesPerGrant: number;
  /** MEMORY USAGE and OBJECT ENCODING of one job hash: what a job costs and why. */
  sampleJob: { key: string; bytes: number; encoding: string; fields: Record<string, string> };
}

/**
 * Scenario 4: Redis used_memory per scheduled grant, through the real scheduler (a delayed job
 * per grant, due within the horizon), against one plain BullMQ delayed job per grant with default
 * options and the same data.
 */
export async function redisMemory(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const now = Date.now();
  const clientRef = newId('c');
  const grants: SchedulableGrant[] = Array.from({ length: count }, (_, i) => ({
    id: newId('g'),
    version: 3,
    clientRef,
    nextRefreshAt: now + 120_000 + Math.floor(((i * 7919) % count) * ((HORIZON_MS - 240_000) / count)),
  }));

  const first = grants[0] as SchedulableGrant;
  const ourKey = `${DEFAULT_QUEUE_PREFIX}:${REFRESH_QUEUE_NAME}:${refreshJobId(first.id, first.version, first.nextRefreshAt)}`;
  const scheduleOurs: Fill = async (connection, add) => {
    const queue = createRefreshQueue(connection);
    const scheduler = new QueueScheduler(queue, { horizonMs: HORIZON_MS });
    for (let i = 0; i < count; i += CHUNK) add(await scheduler.schedule(grants.slice(i, i + CHUNK)));
    await queue.close();
  };
  const ours = await measure(ctx, ourKey, '4 grantkeeper scheduler', count, scheduleOurs);
  // What-if for the note: the same jobs with Redis allowed to keep 192-byte values in a listpack.
  const [, listpackLimit] = (await ctx.redis.config('GET', 'hash-max-listpack-value')) as [string, string];
  await ctx.redis.config('SET', 'hash-max-listpack-value', '192');
  const oursListpack = await measure(
    ctx,
    ourKey,
    '4 … with hash-max-listpack-value 192',
    count,
    scheduleOurs,
  );
  await ctx.redis.config('SET', 'hash-max-listpack-value', listpackLimit);
  // BullMQ numbers jobs without an id from 1, under its default prefix.
  const plain = await measure(
    ctx,
    'bull:plain:1',
    '4 plain BullMQ delayed jobs',
    count,
    async (connection, add) => {
      const queue = new Queue('plain', { connection });
      for (let i = 0; i < count; i += CHUNK) {
        const batch = grants.slice(i, i + CHUNK);
        await queue.addBulk(
          batch.map((g) => ({
            name: 'refresh',
            data: { grantId: g.id, version: g.version },
            opts: { delay: g.nextRefreshAt - Date.now() },
          })),
        );
        add(batch.length);
      }
      await queue.close();
    },
  );
  await ctx.redis.flushall();

  const totalMiB = (ours.bytesPerGrant * 1_000_000) / MIB;
  const atMillion = count >= 1_000_000;
  return {
    id: 'redis-memory',
    title: '4 Redis memory',
    figures: [
      figure({
        name: `bytes per scheduled grant at ${count.toLocaleString('en-US')}`,
        value: ours.bytesPerGrant,
        unit: 'B',
        better: 'lower',
        reference: { name: 'default BullMQ delayed job', value: plain.bytesPerGrant },
        target: {
          text: `≤ ${REDIS_TARGET_BYTES_PER_GRANT} B`,
          holds: ours.bytesPerGrant <= REDIS_TARGET_BYTES_PER_GRANT,
        },
        note: `one grantkeeper job hash is ${ours.sampleJob.bytes} B (${ours.sampleJob.encoding}); a default one ${plain.sampleJob.bytes} B (${plain.sampleJob.encoding}). Redis keeps a hash as a compact listpack only while every value is ≤ hash-max-listpack-value (${listpackLimit} B in this run; the managed redis-server sets 128, Redis's default is 64); grantkeeper's opts field is ${ours.sampleJob.fields.opts?.length ?? 0} B. With hash-max-listpack-value 192 the same jobs cost ${oursListpack.bytesPerGrant} B per grant.`,
      }),
      figure({
        name: atMillion ? 'MiB for 1,000,000 grants' : 'MiB for 1,000,000 grants (projected)',
        value: totalMiB,
        unit: 'MiB',
        better: 'lower',
        reference: { name: 'default BullMQ delayed jobs', value: (plain.bytesPerGrant * 1_000_000) / MIB },
        target: {
          text: `≤ ${REDIS_TARGET_MIB_AT_MILLION} MiB`,
          holds: totalMiB <= REDIS_TARGET_MIB_AT_MILLION,
        },
        ...(atMillion
          ? {}
          : { note: 'projected from the per-grant figure; run with --grants 1000000 to measure it.' }),
      }),
    ],
    details: {
      grants: count,
      horizonMs: HORIZON_MS,
      grantkeeperJob: ours.sampleJob,
      defaultJob: plain.sampleJob,
    },
  };
}

async function measure(
  ctx: BenchContext,
  sampleKey: string,
  label: string,
  count: number,
  fill: Fill,
): Promise<Measured> {
  await ctx.redis.flushall();
  const connection = new Redis(ctx.redisUrl, { maxRetriesPerRequest: null });
  try {
    const before = await usedMemory(ctx.redis);
    let added = 0;
    const startedAt = Date.now();
    await fill(connection, (n) => {
      added += n;
      ctx.progress.update(label, added, count, startedAt);
    });
    ctx.progress.finishLine();
    const after = await usedMemory(ctx.redis);
    return {
      bytesPerGrant: Math.round((after - before) / count),
      sampleJob: {
        key: sampleKey,
        bytes: Number(await ctx.redis.memory('USAGE', sampleKey)),
        encoding: String(await ctx.redis.object('ENCODING', sampleKey)),
        fields: await ctx.redis.hgetall(sampleKey),
      },
    };
  } finally {
    connection.disconnect();
  }
}
