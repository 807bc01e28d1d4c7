import type { PaceOutcome } from './pace-policy.js';
import type { RateLimit } from './rate-limit.js';

/** May a request of this client go now, as far as its condition goes? */
export type Admission =
  /** Yes. `probe`: the client is degraded and this is its one probe; its outcome must be reported. */
  | { kind: 'go'; probe: boolean }
  /** Not before `retryAt`: the client is paused, or its probe is out. */
  | { kind: 'later'; retryAt: number; reason: 'paused' | 'probing' | 'refused' }
  /**
   * The client's credentials were refused (`failing`) and no probe is due: a scheduled refresh stops
   * its grant as `client_error` without spending a request on the same dead secret.
   */
  | { kind: 'refused'; since: number; code: string; retryAt: number };

/**
 * Who asks, as far as a failing client goes: an operator's retry is the probe at once; a client
 * changed since its incident (`client add` again: `revision` moved) gets one probe at once too.
 */
export interface AdmitRequest {
  operator: boolean;
  /** The client's `updatedAt` as this process knows it. */
  revision: number;
}

/** A slot in the client's rate limit. */
export type Reservation =
  /** Reserved for this request, to be sent after `waitMs` (a wait worth holding a lease for). */
  | { kind: 'go'; waitMs: number }
  /** The rate is spent until about `retryAt`; nothing was reserved. */
  | { kind: 'later'; retryAt: number; reason: 'rate' };

/** A change in a client's condition, reported once across every replica: the incident's edge. */
export type PaceTransition =
  | { kind: 'degraded'; reason: 'throttled' | 'failures' }
  /** The provider refused the client's credentials: one incident for all its grants. */
  | { kind: 'failing'; code: string }
  | { kind: 'recovered'; from: 'degraded' | 'failing' };

/** A client's condition as `status`, the API and metrics show it. */
export interface ClientCondition {
  /** failing: the provider refused its credentials (invalid_client, unauthorized_client). */
  state: 'ok' | 'degraded' | 'failing';
  /** When it became degraded or failing (epoch ms). */
  since?: number;
  /** No request before this (epoch ms), then one probe at a time until one is answered. */
  pausedUntil?: number;
  reason?: 'throttled' | 'failures' | 'client_error';
  /** While failing: the provider's error code. */
  code?: string;
  /** After a recovery: the rate limit is ramping back to full until this (epoch ms). */
  rampUntil?: number;
}

/**
 * Client-wide pacing shared by every replica (invariant 5): a per-client rate limit, a pause for a
 * 429 or Retry-After, a breaker that opens on a burst of transient failures, and an incident when
 * the provider refuses the client's credentials. While a client is degraded its grants keep their
 * own state and wait; while it is failing its scheduled grants stop without a request. One probe
 * at a time decides when it is serving again, and its rate limit then ramps back up.
 */
export interface ClientPacer {
  /** Asks whether the client's requests may go (not paused, or this one is the probe): no rate slot. */
  admit(clientRef: string, request: AdmitRequest): Promise<Admission>;
  /**
   * Reserves a slot in the client's rate limit, as close before sending as a lease allows, so the
   * time between the slot and the provider's clock varies little.
   */
  reserve(clientRef: string, limit: RateLimit): Promise<Reservation>;
  /**
   * Tells how a sent request ended (always for a probe; otherwise the pacer may skip what changes
   * nothing). Returns the transition this report made, if it made one: exactly one report across
   * all replicas sees each `degraded`, `failing` and `recovered`. `revision`: the client's
   * `updatedAt` the request was sent with (a refusal is pinned to it).
   */
  report(
    clientRef: string,
    grantId: string,
    outcome: PaceOutcome,
    probe: boolean,
    revision?: number,
  ): Promise<PaceTransition | undefined>;
  /** The client's condition now. */
  condition(clientRef: string): Promise<ClientCondition>;
}

/** For processes without Redis (one-shot CLI commands): every request may go at once. */
export const NO_PACER: ClientPacer = {
  admit: async () => ({ kind: 'go', probe: false }),
  reserve: async () => ({ kind: 'go', waitMs: 0 }),
  report: async () => undefined,
  condition: async () => ({ state: 'ok' }),
};
