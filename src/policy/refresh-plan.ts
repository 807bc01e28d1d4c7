import { type GrantKind, type GrantMode, hasRefreshToken } from '../grants/grant.js';
import type { TokenSet } from '../oauth/token-response.js';
import {
  accessExpiry,
  keepAliveDeadline,
  nextRefreshAt,
  type RefreshTimingPolicy,
} from './refresh-timing.js';

export interface ProviderTiming {
  defaultAccessLifetimeSec: number;
  keepAliveIntervalSec: number;
}

/**
 * The provider's timing as a grant of this kind lives by it: without a refresh token there is
 * nothing to keep alive, so no keep-alive deadline caps the schedule.
 */
export function timingFor(provider: ProviderTiming, kind: GrantKind): ProviderTiming {
  return hasRefreshToken(kind)
    ? provider
    : {
        defaultAccessLifetimeSec: provider.defaultAccessLifetimeSec,
        keepAliveIntervalSec: Number.POSITIVE_INFINITY,
      };
}

export interface RefreshPlan {
  accessExpiresAt: number;
  accessLifetimeMs: number;
  /** The token response is proof the refresh token was just accepted or issued. */
  refreshTokenUsedAt: number;
  nextRefreshAt: number;
  /** No expires_in came back: the provider's default lifetime was assumed. */
  defaultedLifetime: boolean;
}

/**
 * What a token response means for the schedule, whether it came from a refresh or a consent.
 * An `eager` grant is refreshed ahead of its access token's expiry; a `keepalive` grant only ahead
 * of the keep-alive deadline (readers refresh it on demand in between).
 */
export function planAfterTokenResponse(
  tokens: Pick<TokenSet, 'expiresIn'>,
  sentAt: number,
  now: number,
  provider: ProviderTiming,
  timing: RefreshTimingPolicy,
  mode: GrantMode = 'eager',
  random?: () => number,
): RefreshPlan {
  const expiry = accessExpiry(sentAt, tokens.expiresIn, provider.defaultAccessLifetimeSec, timing);
  const deadline = keepAliveDeadline(sentAt, provider.keepAliveIntervalSec);
  const target =
    mode === 'eager'
      ? { accessExpiresAt: expiry.expiresAt, accessLifetimeMs: expiry.lifetimeMs }
      : { accessExpiresAt: deadline, accessLifetimeMs: provider.keepAliveIntervalSec * 1000 };
  return {
    accessExpiresAt: expiry.expiresAt,
    accessLifetimeMs: expiry.lifetimeMs,
    refreshTokenUsedAt: sentAt,
    nextRefreshAt: nextRefreshAt({ now, ...target, keepAliveDeadline: deadline }, timing, random),
    defaultedLifetime: expiry.defaulted,
  };
}
