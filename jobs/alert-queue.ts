import { createHash } from 'node:crypto';
import { type ConnectionOptions, Queue } from 'bullmq';
import { z } from 'zod';
import { ALERT_EVENTS } from '../src/notify/alert-policy.js';
import { DEFAULT_QUEUE_PREFIX } from './refresh-queue.js';

export const ALERT_QUEUE_NAME = 'alerts';

/**
 * A job names the event, the grant and the webhook by a hash of its URL: no label, token or URL
 * (which may embed a secret) ever sits in Redis. The body is built from the db at delivery time.
 */
export const alertJobDataSchema = z
  .object({
    event: z.enum(ALERT_EVENTS),
    grantId: z.string().min(1).max(64),
    at: z.number().int().nonnegative(),
    target: z.string().regex(/^[0-9a-f]{16}$/),
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

export function createAlertQueue(connection: ConnectionOptions, prefix = DEFAULT_QUEUE_PREFIX): AlertQueue {
  return new Queue<AlertJobData, unknown, string>(ALERT_QUEUE_NAME, { connection, prefix });
}

/** One job per webhook, so each receiver retries on its own. */
export async function enqueueAlert(
  queue: AlertQueue,
  alert: Omit<AlertJobData, 'target'>,
  targets: readonly string[],
  retry: AlertRetryPolicy = DEFAULT_ALERT_RETRY,
): Promise<void> {
  await queue.addBulk(
    targets.map((target) => ({
      name: alert.event,
      data: { ...alert, target },
      opts: {
        jobId: `${alert.event}-${alert.grantId}-${alert.at}-${target}`.replaceAll(':', '_'),
        attempts: retry.attempts,
        backoff: { type: 'exponential', delay: retry.baseDelayMs },
        removeOnComplete: { age: 24 * 3600, count: 1000 },
        removeOnFail: { age: 7 * 24 * 3600, count: 10_000 },
      },
    })),
  );
}
