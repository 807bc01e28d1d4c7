import { type ConnectionOptions, Queue } from 'bullmq';
import { z } from 'zod';

export const REFRESH_QUEUE_NAME = 'refresh';
export const DEFAULT_QUEUE_PREFIX = 'grantkeeper';

/** All a job carries: which grant, at which version. Never a token (invariant 1). */
export const refreshJobDataSchema = z
  .object({ grantId: z.string().min(1).max(64), version: z.number().int().nonnegative() })
  .strict();

/**
 * A job's name is its grant's client, so pacing can turn the job away before it reads the store.
 * It is not in the data: replicas of the previous version, still running during a rolling upgrade,
 * refuse data with fields they do not know, and they never read the name.
 */
export const jobClientSchema = z.string().regex(/^c_[A-Za-z0-9_-]{1,62}$/);

export type RefreshJobData = z.infer<typeof refreshJobDataSchema>;

/**
 * A job id names one planned run: grant, version and due time. Re-adding the same plan is a no-op
 * in BullMQ, which makes scheduling idempotent for the reconciler; a new version or a new due time
 * is a new plan. (BullMQ forbids ':' in custom ids.)
 */
export function refreshJobId(grantId: string, version: number, dueAt: number): string {
  // Base 36 keeps the id short: ids are stored several times per job in Redis.
  return `${grantId}-v${version}-${dueAt.toString(36)}`;
}

export type RefreshQueue = Queue<RefreshJobData, unknown, string>;

export function createRefreshQueue(
  connection: ConnectionOptions,
  prefix = DEFAULT_QUEUE_PREFIX,
): RefreshQueue {
  return new Queue<RefreshJobData, unknown, string>(REFRESH_QUEUE_NAME, { connection, prefix });
}
