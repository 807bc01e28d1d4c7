/**
 * How one client's bad minute is kept from becoming a storm (invariant 5): the pure half of
 * client-wide pacing. The Redis pacer holds the state; these numbers and rules are all it decides by.
 */

/** A 429 without Retry-After still pauses the client this long. */
export const DEFAULT_THROTTLE_PAUSE_MS = 30_000;
/** A Retry-After beyond this is capped: a grant must not go unrefreshed for hours on one header. */
export const MAX_THROTTLE_PAUSE_MS = 15 * 60_000;

/**
 * Transient failures of this many different grants of one client within the window open its
 * breaker: a burst across the client, not one grant retrying on its own backoff.
 */
export const BREAKER_FAILURES = 10;
export const BREAKER_WINDOW_MS = 60_000;
/** Pause after the breaker opens, doubled for every failed probe, up to the cap. */
export const BREAKER_BASE_PAUSE_MS = 5_000;
export const BREAKER_MAX_PAUSE_MS = 5 * 60_000;

/** How a sent request ended, as pacing sees it. */
export type PaceOutcome =
  /** The provider answered (tokens, or a refusal about this grant): it is serving this client. */
  | { kind: 'answered' }
  /** 429, or a Retry-After: the whole client waits until then. */
  | { kind: 'throttled'; pauseMs: number }
  /** Timeout, network error, 5xx without Retry-After: counts toward the breaker. */
  | { kind: 'transient' }
  /** invalid_client, unauthorized_client: the client's credentials, not the grant, were refused. */
  | { kind: 'refused'; code: string };

/** What a token request's failure (or success: undefined) means for the client's pacing. */
export function paceOutcome(
  failure:
    | {
        status?: number;
        retryAfterMs?: number;
        kind: 'permanent' | 'transient';
        outcome: string;
        code: string;
      }
    | undefined,
): PaceOutcome {
  if (!failure) return { kind: 'answered' };
  if (failure.outcome === 'client_error') return { kind: 'refused', code: failure.code };
  if (failure.status === 429 || failure.retryAfterMs !== undefined) {
    // retryAfterMs is a duration (token-errors.ts parses HTTP-dates against the response's clock).
    const wait = failure.retryAfterMs ?? DEFAULT_THROTTLE_PAUSE_MS;
    return { kind: 'throttled', pauseMs: Math.min(MAX_THROTTLE_PAUSE_MS, Math.max(1000, wait)) };
  }
  if (failure.kind === 'transient' && (failure.status === undefined || failure.status >= 500)) {
    return { kind: 'transient' };
  }
  return { kind: 'answered' };
}

/**
 * A failing client's next probe waits this long, doubled for every refused probe up to the cap:
 * a secret rarely fixes itself, and `client add` or an operator's retry probes at once anyway.
 */
export const FAILING_BASE_PAUSE_MS = 60_000;
export const FAILING_MAX_PAUSE_MS = 60 * 60_000;

/**
 * After a recovery the rate limit ramps back: the admitted rate starts at this fraction of the
 * limit and grows linearly to all of it over the ramp, without a burst, so a provider that just
 * came back is not met with everything that waited.
 */
export const RAMP_MS = 30_000;
export const RAMP_START_FRACTION = 0.1;

/** The pause after the breaker's n-th consecutive opening (1 = the first). */
export function breakerPauseMs(openings: number): number {
  return Math.min(BREAKER_MAX_PAUSE_MS, BREAKER_BASE_PAUSE_MS * 2 ** Math.max(0, openings - 1));
}

/**
 * Jobs turned away while a client is paused come back spread over this window after the pause (the
 * probe among the first); those turned away while the probe is out ask again as soon as a probe is
 * usually answered, spread the same way.
 */
export const RESUME_SPREAD_MS = 2_000;
export const PROBE_WAIT_MS = 1_000;

/**
 * A client this process has heard no answer from for this long is cold: its next request goes
 * alone (the canary), and the rest of a burst waits up to CANARY_WAIT_MS for the answer. A burst
 * of due refreshes into a provider that began to throttle while nothing was sent then costs one
 * request per replica, not a concurrency's worth.
 */
export const COLD_AFTER_MS = 60_000;
export const CANARY_WAIT_MS = 1_000;

/**
 * A client Redis admitted with nothing to report (not paused, degraded or failing) is admitted again
 * without asking for this long: a busy client then costs one admission round trip per 0.1 s, not one
 * per refresh. What another replica learns meanwhile reaches this one that much later; what this one
 * learns (its own 429 or refusal) ends it at once.
 */
export const ADMIT_MEMO_MS = 100;
