export interface RefreshTimingPolicy {
  /** Lead time as a fraction of the access token's lifetime. */
  leadFraction: number;
  minLeadMs: number;
  maxLeadMs: number;
  /** Extra lead of up to this fraction of the lead, drawn at random per grant. */
  jitterFraction: number;
  /** Floor between now and the next refresh, so expires_in 0 or negative can never cause a tight loop. */
  minIntervalMs: number;
  /** Cap on an access lifetime, so a huge expires_in cannot push a refresh out of reach. */
  maxLifetimeMs: number;
}

export const DEFAULT_REFRESH_TIMING: RefreshTimingPolicy = {
  leadFraction: 0.2,
  minLeadMs: 1_000,
  maxLeadMs: 10 * 60_000,
  jitterFraction: 0.5,
  minIntervalMs: 2_000,
  maxLifetimeMs: 366 * 24 * 60 * 60_000,
};

export interface AccessExpiry {
  expiresAt: number;
  lifetimeMs: number;
  /** True when the response had no expires_in and the provider's default lifetime was used. */
  defaulted: boolean;
}

/**
 * When an access token expires, measured from `sentAt` (our clock when the request left), not from
 * when the response arrived or from any server timestamp: a slow response only makes us refresh early.
 */
export function accessExpiry(
  sentAt: number,
  expiresInSec: number | undefined,
  defaultLifetimeSec: number,
  policy: RefreshTimingPolicy = DEFAULT_REFRESH_TIMING,
): AccessExpiry {
  const defaulted = expiresInSec === undefined;
  const seconds = defaulted ? defaultLifetimeSec : expiresInSec;
  // `!(x > 0)` also catches NaN.
  const lifetimeMs = !(seconds > 0) ? 0 : Math.min(Math.round(seconds * 1000), policy.maxLifetimeMs);
  return { expiresAt: sentAt + lifetimeMs, lifetimeMs, defaulted };
}

export interface NextRefreshInput {
  now: number;
  accessExpiresAt: number;
  accessLifetimeMs: number;
  keepAliveDeadline: number;
}

/**
 * When to refresh next: ahead of access expiry by a lead proportional to the lifetime, moved earlier
 * by a random jitter so grants issued together do not all come due together, never after the
 * keep-alive deadline, and never sooner than `minIntervalMs` from now.
 */
export function nextRefreshAt(
  input: NextRefreshInput,
  policy: RefreshTimingPolicy = DEFAULT_REFRESH_TIMING,
  random: () => number = Math.random,
): number {
  const lifetime = Math.max(0, input.accessLifetimeMs);
  const proportional = Math.min(Math.max(lifetime * policy.leadFraction, policy.minLeadMs), policy.maxLeadMs);
  // For tiny lifetimes the minimum lead would reach back past issuance; half the lifetime keeps
  // lead plus jitter inside the token's life.
  const lead = Math.min(proportional, lifetime / 2);
  const jitter = random() * policy.jitterFraction * lead;
  const due = Math.floor(Math.min(input.accessExpiresAt - lead - jitter, input.keepAliveDeadline));
  return Math.max(due, input.now + policy.minIntervalMs);
}

/** The latest moment the refresh token may sit unused before the provider's idle limit comes close. */
export function keepAliveDeadline(refreshTokenUsedAt: number, keepAliveIntervalSec: number): number {
  return refreshTokenUsedAt + keepAliveIntervalSec * 1000;
}
