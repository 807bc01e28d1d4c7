import type { PaceOutcome } from './pace-policy.js';
import type { RateLimit } from './rate-limit.js';

/** May this process send one of the client's token requests now? */
export type PaceDecision =
  /**
   * Yes, after `waitMs` (a rate-limit slot reserved for this request, shorter than a lease is
   * worth giving up). `probe`: the client is degraded and this request is its one probe; its
   * outcome must be reported.
   */
  | { kind: 'go'; waitMs: number; probe: boolean }
  /** Not before `retryAt`: the client is paused, its probe is out, or its rate is spent until then. */
  | { kind: 'later'; retryAt: number; reason: 'paused' | 'probing' | 'rate' };

/** A change in a client's condition, reported once across every replica: the incident's edge. */
export type PaceTransition = { kind: 'degraded'; reason: 'throttled' | 'failures' } | { kind: 'recovered' };

/** A client's condition as `status`, the API and metrics show it. */
export interface ClientCondition {
  state: 'ok' | 'degraded';
  /** When it became degraded (epoch ms). */
  since?: number;
  /** No request before this (epoch ms), then one probe at a time until one is answered. */
  pausedUntil?: number;
  reason?: 'throttled' | 'failures';
}

/**
 * Client-wide pacing shared by every replica (invariant 5): a per-client rate limit, a pause for a
 * 429 or Retry-After, and a breaker that opens on a burst of transient failures. While a client is
 * degraded its grants keep their own state and wait; one probe request at a time decides when it
 * is serving again.
 */
export interface ClientPacer {
  /** Asks to send one token request of the client; undefined `limit` means no rate limit. */
  acquire(clientRef: string, limit: RateLimit | undefined): Promise<PaceDecision>;
  /**
   * Tells how a sent request ended (always for a probe; otherwise the pacer may skip what changes
   * nothing). Returns the transition this report made, if it made one: exactly one report across
   * all replicas sees each `degraded` and `recovered`.
   */
  report(
    clientRef: string,
    grantId: string,
    outcome: PaceOutcome,
    probe: boolean,
  ): Promise<PaceTransition | undefined>;
  /** The client's condition now. */
  condition(clientRef: string): Promise<ClientCondition>;
}

/** For processes without Redis (one-shot CLI commands): every request may go at once. */
export const NO_PACER: ClientPacer = {
  acquire: async () => ({ kind: 'go', waitMs: 0, probe: false }),
  report: async () => undefined,
  condition: async () => ({ state: 'ok' }),
};
