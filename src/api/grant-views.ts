import type { ClientRow, GrantRow, RefreshEventRow } from '../../db/schema.js';
import { isInDoubt } from '../notify/alert-policy.js';
import type { ProviderProfile } from '../oauth/providers.js';
import type { GrantView } from './schemas.js';

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

/** The public face of a grant: state and times, never a sealed field or lease owner. */
export function toGrantView(
  grant: GrantRow,
  client: ClientRow | undefined,
  events?: RefreshEventRow[],
): GrantView {
  const profile = client?.profile as ProviderProfile | undefined;
  return {
    id: grant.id,
    label: grant.label,
    client: client?.name ?? null,
    provider: client?.provider ?? null,
    state: grant.state,
    mode: grant.mode,
    version: grant.version,
    access_expires_at: iso(grant.accessExpiresAt),
    next_refresh_at: iso(grant.nextRefreshAt),
    refresh_token_used_at: iso(grant.refreshTokenUsedAt),
    keepalive_deadline: profile ? iso(grant.refreshTokenUsedAt + profile.keepAliveIntervalSec * 1000) : null,
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
            duration_ms: e.durationMs,
            http_status: e.httpStatus,
            error_code: e.errorCode,
            message: e.message,
          })),
        }
      : {}),
  };
}
