import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { type ConnectionOptions, Queue } from 'bullmq';
import { z } from 'zod';
import { ALERT_EVENTS } from '../src/notify/alert-policy.js';
import { DEFAULT_QUEUE_PREFIX } from './refresh-queue.js';

export const ALERT_QUEUE_NAME = 'alerts';

/**
 * A job names the event, what it is about (a grant id, or a queue name for queue events) and the
 * webhook by a hash of its URL: no label, token or URL (which may embed a secret) ever sits in
 * Redis. The body is built from the db (or the queue) at delivery time.
 * `mac` signs the rest under the webhook secret, so whoever can write to Redis still cannot make
 * the worker sign and send an alert of their own.
 */
export const alertJobDataSchema = z
  .object({
    event: z.enum(ALERT_EVENTS),
    subject: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    at: z.number().int().nonnegative(),
    target: z.string().regex(/^[0-9a-f]{16}$/),
    mac: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .strict();
export type AlertJobData = z.infer<typeof alertJobDataSchema>;
export type AlertQueue = Queue<AlertJobData, unknown, string>;

export interface AlertRetryPolicy {
  attempts: number;
  baseDelayMs: number;
}

/** 8 attempts, 5 s doubling: a receiver may be down for about ten minutes without losing an alert. */
export const DEFAULT_ALERT_RETRY: AlertRetryPolicy = { attempts: 8, baseDelayMs: 5000 };

export function webhookTargetId(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 16);
}

function alertMac(secret: string, job: Omit<AlertJobData, 'mac'>): Buffer {
  return createHmac('sha256', secret)
    .update(`grantkeeper/alert-job/v1\0${job.event}\0${job.subject}\0${job.at}\0${job.target}`)
    .digest();
}

/** True when the job was made by a holder of the webhook secret. */
export function alertJobIsAuthentic(secret: string, job: AlertJobData): boolean {
  const { mac, ...rest } = job;
  const given = Buffer.from(mac, 'hex');
  const expected = alertMac(secret, rest);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function createAlertQueue(connection: ConnectionOptions, prefix = DEFAULT_QUEUE_PREFIX): AlertQueue {
  return new Queue<AlertJobData, unknown, string>(ALERT_QUEUE_NAME, { connection, prefix });
}

/** One job per webhook, so each receiver retries on its own. */
export async function enqueueAlert(
  queue: AlertQueue,
  secret: string,
  alert: Omit<AlertJobData, 'target' | 'mac'>,
  targets: readonly string[],
  retry: AlertRetryPolicy = DEFAULT_ALERT_RETRY,
): Promise<void> {
  await queue.addBulk(
    targets.map((target) => ({
      name: alert.event,
      data: { ...alert, target, mac: alertMac(secret, { ...alert, target }).toString('hex') },
      opts: {
        jobId: `${alert.event}-${alert.subject}-${alert.at}-${target}`.replaceAll(':', '_'),
        attempts: retry.attempts,
        backoff: { type: 'exponential', delay: retry.baseDelayMs },
        removeOnComplete: { age: 24 * 3600, count: 1000 },
        removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
      },
    })),
  );
}
