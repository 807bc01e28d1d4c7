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

export interface RefreshPlan {
  accessExpiresAt: number;
  accessLifetimeMs: number;
  /** The token response is proof the refresh token was just accepted or issued. */
  refreshTokenUsedAt: number;
  nextRefreshAt: number;
  /** No expires_in came back: the provider's default lifetime was assumed. */
  defaultedLifetime: boolean;
}

/** What a token response means for the schedule, whether it came from a refresh or a consent. */
export function planAfterTokenResponse(
  tokens: Pick<TokenSet, 'expiresIn'>,
  sentAt: number,
  now: number,
  provider: ProviderTiming,
  timing: RefreshTimingPolicy,
  random?: () => number,
): RefreshPlan {
  const expiry = accessExpiry(sentAt, tokens.expiresIn, provider.defaultAccessLifetimeSec, timing);
  return {
    accessExpiresAt: expiry.expiresAt,
    accessLifetimeMs: expiry.lifetimeMs,
    refreshTokenUsedAt: sentAt,
    nextRefreshAt: nextRefreshAt(
      {
        now,
        accessExpiresAt: expiry.expiresAt,
        accessLifetimeMs: expiry.lifetimeMs,
        keepAliveDeadline: keepAliveDeadline(sentAt, provider.keepAliveIntervalSec),
      },
      timing,
      random,
    ),
    defaultedLifetime: expiry.defaulted,
  };
}
