import type { Client } from '../../grants/ports.js';
import type { ClientCondition } from '../../pacing/client-pacer.js';
import type { RateLimit } from '../../pacing/rate-limit.js';
import type { ClientView } from '../schemas.js';

const isoOrNull = (at: number | undefined) => (at === undefined ? null : new Date(at).toISOString());

/** A rate limit in the API's names; null for none. */
export function rateLimitView(limit: RateLimit | undefined): ClientView['rate_limit'] {
  return limit ? { requests_per_second: limit.requestsPerSecond, burst: limit.burst } : null;
}

/** A client's public face and its pacing condition: never its secret or private key. */
export function toClientView(client: Client, condition: ClientCondition): ClientView {
  return {
    id: client.id,
    name: client.name,
    provider: client.profile.kind,
    rate_limit: rateLimitView(client.profile.rateLimit),
    condition: {
      state: condition.state,
      reason: condition.reason ?? null,
      error_code: condition.code ?? null,
      degraded_since: isoOrNull(condition.since),
      paused_until: isoOrNull(condition.pausedUntil),
      ramp_until: isoOrNull(condition.rampUntil),
    },
  };
}
