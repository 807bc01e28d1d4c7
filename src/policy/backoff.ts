export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** Cap on a server's Retry-After, so a hostile or buggy value cannot park a grant for days. */
  maxRetryAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  baseMs: 5_000,
  maxMs: 15 * 60_000,
  maxRetryAfterMs: 60 * 60_000,
};

export interface RetryDelayInput {
  /** Failures in a row, including the one just seen (so ≥ 1). */
  consecutiveFailures: number;
  retryAfterMs?: number;
}

/**
 * Delay before the next attempt: exponential growth capped at `maxMs`, with "equal jitter" (half
 * fixed, half random) so many grants failing together retry spread out, but never sooner than the
 * server's Retry-After (itself capped).
 */
export function retryDelayMs(
  input: RetryDelayInput,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const failures = input.consecutiveFailures >= 1 ? Math.floor(input.consecutiveFailures) : 1;
  // Past 2^52 the cap has long since won; bounding the exponent keeps the product finite.
  const exponential = Math.min(policy.baseMs * 2 ** Math.min(failures - 1, 52), policy.maxMs);
  const half = exponential / 2;
  const delay = Math.round(half + random() * half);
  const retryAfter = input.retryAfterMs;
  if (retryAfter === undefined || !(retryAfter > 0)) return delay;
  return Math.max(delay, Math.ceil(Math.min(retryAfter, policy.maxRetryAfterMs)));
}
