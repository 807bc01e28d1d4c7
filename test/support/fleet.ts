import { randomBytes } from 'node:crypto';
import { type GrantState, LIVE_GRANT_STATES, type RefreshOutcome } from '../../src/grants/grant.js';
import type { Client } from '../../src/grants/ports.js';
import type { StoreContext } from '../../src/service/store-context.js';
import { newId } from '../../src/store/ids.js';
import { sealContext } from '../../src/store/seal-contexts.js';

const HOUR = 3_600_000;

/** The mix of a fleet some months in: mostly healthy, a few failing, a few dead. */
const STATE_MIX: Array<[GrantState, number]> = [
  ['active', 0.86],
  ['failing', 0.07],
  ['needs_reconsent', 0.04],
  ['client_error', 0.02],
  ['broken', 0.01],
];
const LAST_OUTCOME: Record<GrantState, RefreshOutcome> = {
  active: 'refreshed',
  failing: 'transient_error',
  needs_reconsent: 'needs_reconsent',
  client_error: 'client_error',
  broken: 'broken',
};
const NAMES = ['support', 'newsroom', 'alerts', 'sales', 'ops', 'research', 'community', 'billing'];
const ERRORS: Partial<Record<GrantState, string>> = {
  failing: 'HTTP 503 from the token endpoint: upstream unavailable',
  needs_reconsent: 'invalid_grant: the refresh token was revoked',
  client_error: 'invalid_client: client authentication failed',
  broken: 'its tokens do not open with the loaded keys',
};

export interface SeededEvent {
  grantId: string;
  at: number;
  outcome: RefreshOutcome;
  durationMs: number | null;
}

export interface SeededFleet {
  ids: string[];
  events: SeededEvent[];
}

/** A deterministic pseudo-random sequence, so a fleet (and its screenshot) is the same every run. */
function sequence(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1_664_525 + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * `count` grants spread over `clients`, written straight into the SQLite file in one transaction
 * (the store's own sealer seals their tokens, so they open like any consented grant), with about
 * three refresh events each over the last day. Seconds for 50,000, where as many consents would
 * take minutes. Planned refreshes fall 15 min to 24 h ahead, so a running worker leaves them alone
 * while a test looks at them.
 */
export function seedFleet(
  app: StoreContext,
  clients: Client[],
  count: number,
  now = Date.now(),
  seed = 16,
): SeededFleet {
  const sqlite = app.database?.sqlite;
  if (!sqlite) throw new Error('seedFleet needs a SQLite store');
  const random = sequence(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const stateOf = () => {
    const r = random();
    let below = 0;
    for (const [state, share] of STATE_MIX) {
      below += share;
      if (r < below) return state;
    }
    return 'active';
  };
  const insertGrant = sqlite.prepare(
    `insert into grants (id, client_ref, label, subject, state, mode, version, access_token_sealed,
       refresh_token_sealed, token_type, scope, access_expires_at, access_lifetime_ms, refresh_token_used_at,
       next_refresh_at, consecutive_failures, last_error, last_error_at, last_refreshed_at, created_at, updated_at)
     values (?, ?, ?, null, ?, ?, 3, ?, ?, 'Bearer', 'openid offline_access', ?, 3600000, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertEvent = sqlite.prepare(
    `insert into refresh_events (grant_id, at, trigger, outcome, version, duration_ms, http_status, error_code, message)
     values (?, ?, 'schedule', ?, 3, ?, ?, ?, ?)`,
  );
  const tokenBody = randomBytes(24).toString('base64url');
  const fleet: SeededFleet = { ids: [], events: [] };
  sqlite.transaction(() => {
    for (let i = 0; i < count; i++) {
      const id = newId('g');
      const client = clients[i % clients.length] as Client;
      const state = stateOf();
      const live = (LIVE_GRANT_STATES as readonly string[]).includes(state);
      const mode = random() < 0.8 ? 'eager' : 'keepalive';
      const label = `@${pick(NAMES)}-${i.toString().padStart(5, '0')}`;
      const nextRefreshAt = now + 15 * 60_000 + Math.floor(random() * 23 * HOUR);
      // Keepalive grants sit unused for days: some of their deadlines fall within the week.
      const idleMs =
        mode === 'keepalive' ? random() * client.profile.keepAliveIntervalSec * 1000 : random() * HOUR;
      const usedAt = Math.floor(now - idleMs);
      const error = ERRORS[state] ?? null;
      insertGrant.run(
        id,
        client.id,
        label,
        state,
        mode,
        app.sealer.seal(`at_${i}_${tokenBody}`, sealContext(id, 'access_token')),
        app.sealer.seal(`rt_${i}_${tokenBody}`, sealContext(id, 'refresh_token')),
        live ? now + 30 * 60_000 : now - 2 * HOUR,
        usedAt,
        nextRefreshAt,
        error ? 1 + Math.floor(random() * 5) : 0,
        error,
        error ? now - Math.floor(random() * 6 * HOUR) : null,
        usedAt,
        now - 90 * 24 * HOUR,
        now,
      );
      fleet.ids.push(id);
      // The newest of its three attempts is the one that left the grant in its state.
      const times = [0, 1, 2].map(() => now - Math.floor(random() * 23.5 * HOUR)).sort((a, b) => a - b);
      for (const [e, at] of times.entries()) {
        const outcome = e === 2 ? LAST_OUTCOME[state] : random() < 0.05 ? 'transient_error' : 'refreshed';
        const durationMs = outcome === 'broken' ? null : 80 + Math.floor(random() * random() * 600);
        insertEvent.run(
          id,
          at,
          outcome,
          durationMs,
          outcome === 'refreshed'
            ? 200
            : outcome === 'transient_error'
              ? 503
              : outcome === 'broken'
                ? null
                : 400,
          outcome === 'refreshed' || outcome === 'transient_error' || outcome === 'broken' ? null : outcome,
          outcome === 'refreshed' ? null : error,
        );
        fleet.events.push({ grantId: id, at, outcome, durationMs });
      }
    }
  })();
  return fleet;
}
