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

/** A refresh token's own end, which no refresh extends, and who set it (shown with it). */
/** What a token response and its plan store for a grant, whatever kind of request it answered. */
export interface IssuedTokens {
  accessToken: string;
  tokenType?: string;
  scope?: string;
  accessExpiresAt: number;
  accessLifetimeMs: number;
  refreshTokenUsedAt: number;
  nextRefreshAt: number;
}

export function issuedTokens(
  tokens: Pick<TokenSet, 'accessToken' | 'tokenType' | 'scope'>,
  plan: RefreshPlan,
): IssuedTokens {
  return {
    accessToken: tokens.accessToken,
    ...(tokens.tokenType === undefined ? {} : { tokenType: tokens.tokenType }),
    ...(tokens.scope === undefined ? {} : { scope: tokens.scope }),
    accessExpiresAt: plan.accessExpiresAt,
    accessLifetimeMs: plan.accessLifetimeMs,
    refreshTokenUsedAt: plan.refreshTokenUsedAt,
    nextRefreshAt: plan.nextRefreshAt,
  };
}

export interface RefreshTokenEnd {
  at: number;
  reason: string;
}

/** A preset's fixed refresh-token lifetime (Google's Testing status, Microsoft's SPA clients). */
export interface FixedRefreshLifetime {
  seconds: number;
  reason: string;
}

/**
 * The hard end a token response sets, measured from `sentAt` like the access token's (invariant 7).
 * `refresh_token_expires_in` wins when the server states one; otherwise a consent gets the preset's
 * fixed lifetime, and a refresh none (undefined: the stored end is kept, since a rotated token of a
 * fixed-lifetime client ends when the first one did). A stated 0 or less is unusable, like absent.
 */
export function refreshTokenEnd(
  tokens: Pick<TokenSet, 'refreshTokenExpiresIn'>,
  sentAt: number,
  fixed?: FixedRefreshLifetime,
): RefreshTokenEnd | undefined {
  const stated = tokens.refreshTokenExpiresIn;
  if (stated !== undefined && stated > 0) {
    return { at: sentAt + Math.round(stated * 1000), reason: 'refresh_token_expires_in' };
  }
  return fixed && { at: sentAt + fixed.seconds * 1000, reason: fixed.reason };
}
