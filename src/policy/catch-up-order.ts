/**
 * After an outage (Redis rebuilt by the reconciler, or the service down for hours) the overdue
 * grants are refreshed most urgent first: nearest access expiry, then nearest keep-alive deadline.
 * Pure: the scheduler turns this into BullMQ priorities, which only overdue jobs carry, so a normal
 * refresh's next job is queued exactly as before.
 */

/** What urgency is judged by; a grant without `accessExpiresAt` is scheduled as before, unranked. */
export interface Urgency {
  accessExpiresAt?: number;
  /** Its last use: within a client, the oldest use is the nearest keep-alive deadline. */
  refreshTokenUsedAt?: number;
}

/** BullMQ's highest priority number (lowest priority); 1 is the most urgent. */
export const PRIORITY_LIMIT = 2 ** 21 - 1;
/** One priority level per second of access expiry, centred on now: about 12 days either way. */
const LEVEL_MS = 1000;
const CENTRE = 2 ** 20;

/**
 * The priority of an overdue job whose access token expires at `accessExpiresAt`: sooner (or long
 * expired) is more urgent. Levels are relative to `now`, so jobs planned in passes minutes apart are
 * ordered within those minutes of exact; one pass (the catch-up's) orders exactly by the second.
 */
export function catchUpPriority(accessExpiresAt: number, now: number): number {
  const level = CENTRE + Math.floor((accessExpiresAt - now) / LEVEL_MS);
  return Math.min(PRIORITY_LIMIT, Math.max(1, level));
}

/** Most urgent first; within a priority level BullMQ keeps insertion order, so this breaks ties. */
export function byUrgency(a: Urgency, b: Urgency): number {
  return (
    (a.accessExpiresAt ?? Number.POSITIVE_INFINITY) - (b.accessExpiresAt ?? Number.POSITIVE_INFINITY) ||
    (a.refreshTokenUsedAt ?? 0) - (b.refreshTokenUsedAt ?? 0)
  );
}
