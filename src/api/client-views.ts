import type { Client } from '../grants/ports.js';
import type { ClientCondition } from '../pacing/client-pacer.js';
import type { ClientView } from './schemas.js';

const isoOrNull = (at: number | undefined) => (at === undefined ? null : new Date(at).toISOString());

/** A client's public face and its pacing condition: never its secret or private key. */
export function toClientView(client: Client, condition: ClientCondition): ClientView {
  return {
    id: client.id,
    name: client.name,
    provider: client.profile.kind,
    rate_limit: client.profile.rateLimit
      ? {
          requests_per_second: client.profile.rateLimit.requestsPerSecond,
          burst: client.profile.rateLimit.burst,
        }
      : null,
    condition: {
      state: condition.state,
      reason: condition.reason ?? null,
      degraded_since: isoOrNull(condition.since),
      paused_until: isoOrNull(condition.pausedUntil),
    },
  };
}
