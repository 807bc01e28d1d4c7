import { type Grant, hasRefreshToken, isInDoubt, type RecordedRefreshEvent } from '../../grants/grant.js';
import type { Client } from '../../grants/ports.js';
import { grantHorizon } from '../../policy/grant-horizon.js';
import { keepAliveDeadline } from '../../policy/refresh-timing.js';
import type { GrantView } from '../schemas.js';

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

/**
 * The public face of a grant: state and times, never a sealed field or lease owner. The API answers
 * it and the CLI's `--json` prints it, so a script moves from one to the other unchanged.
 */
export function toGrantView(
  grant: Grant,
  client: Client | undefined,
  events?: RecordedRefreshEvent[],
): GrantView {
  const profile = client?.profile;
  const horizon = grantHorizon(grant, profile?.refreshIdleLimitSec);
  return {
    id: grant.id,
    label: grant.label,
    client: client?.name ?? null,
    provider: client?.profile.kind ?? null,
    kind: grant.kind,
    subject: grant.subject,
    state: grant.state,
    mode: grant.mode,
    version: grant.version,
    scope: grant.scope,
    access_expires_at: iso(grant.accessExpiresAt),
    next_refresh_at: iso(grant.nextRefreshAt),
    refresh_token_used_at: iso(grant.refreshTokenUsedAt),
    // Only a refresh token can go idle: other kinds have no deadline to keep.
    keepalive_deadline:
      profile && hasRefreshToken(grant.kind)
        ? iso(keepAliveDeadline(grant.refreshTokenUsedAt, profile.keepAliveIntervalSec))
        : null,
    renewable_until: horizon.renewableUntil && iso(horizon.renewableUntil.at),
    renewable_until_reason: horizon.renewableUntil?.reason ?? null,
    needs_consent_by: horizon.needsConsentBy && iso(horizon.needsConsentBy.at),
    needs_consent_by_reason: horizon.needsConsentBy?.reason ?? null,
    last_refreshed_at: isoOrNull(grant.lastRefreshedAt),
    consecutive_failures: grant.consecutiveFailures,
    in_doubt_since: isInDoubt(grant, Date.now()) ? isoOrNull(grant.leaseSentAt) : null,
    last_error: grant.lastError,
    last_error_at: isoOrNull(grant.lastErrorAt),
    created_at: iso(grant.createdAt),
    updated_at: iso(grant.updatedAt),
    ...(events
      ? {
          recent_events: events.map((e) => ({
            at: iso(e.at),
            trigger: e.trigger,
            outcome: e.outcome,
            version: e.version,
            duration_ms: e.durationMs,
            http_status: e.httpStatus,
            error_code: e.errorCode,
            message: e.message,
            rotated: e.rotated,
          })),
        }
      : {}),
  };
}
