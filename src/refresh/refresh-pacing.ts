import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientRepository } from '../grants/ports.js';
import type { Logger } from '../log/logger.js';
import type { TokenEndpointError } from '../oauth/token-errors.js';
import type { Admission, ClientPacer, PaceTransition, Reservation } from '../pacing/client-pacer.js';
import { paceOutcome } from '../pacing/pace-policy.js';
import type { RateLimit } from '../pacing/rate-limit.js';
import { TIMED_OUT, withTimeout } from '../util/with-timeout.js';

/** A client's rate limit is read from the store at most this often per process. */
const LIMIT_CACHE_MS = 10_000;
/**
 * Pacing must never hold a refresh hostage: the queue connection buffers commands while Redis is
 * away, so an answer slower than this lets the request go unpaced (the store's lease still holds).
 */
const PACER_TIMEOUT_MS = 500;

export interface PacingDeps {
  pacer: ClientPacer;
  clients: Pick<ClientRepository, 'get'>;
  /** Told once, across every replica, when a client becomes degraded or recovers. */
  onTransition: (client: { id: string; name: string }, transition: PaceTransition) => void;
  logger: Logger;
  now?: () => number;
}

/** The rate-limit slot's answer: sent (after any short wait), or the time the rate frees up. */
export type Slot = { kind: 'go' } | Extract<Reservation, { kind: 'later' }>;

/**
 * The refresher's side of client-wide pacing: asks before a claim whether the client may send at
 * all, takes a rate slot just before the fence, reports after the commit, and turns a reported
 * transition into one log line and one observer call.
 */
export class RefreshPacing {
  readonly #limits = new Map<string, { limit: RateLimit | undefined; name: string; at: number }>();
  readonly #now: () => number;

  constructor(private readonly deps: PacingDeps) {
    this.#now = deps.now ?? Date.now;
  }

  /** Paused, or its probe out elsewhere: `later`. A Redis that does not answer lets it go. */
  async admit(clientRef: string): Promise<Admission> {
    return (await this.#bounded(this.deps.pacer.admit(clientRef), 'admit')) ?? { kind: 'go', probe: false };
  }

  /** Waits out a short rate-limit slot itself; a longer wait is `later`. No limit: go at once. */
  async slot(clientRef: string): Promise<Slot> {
    const { limit } = await this.#client(clientRef);
    if (!limit) return { kind: 'go' };
    const reservation = await this.#bounded(this.deps.pacer.reserve(clientRef, limit), 'reserve');
    if (reservation?.kind === 'later') return reservation;
    if (reservation && reservation.waitMs > 0) await sleep(reservation.waitMs);
    return { kind: 'go' };
  }

  /** Reports how the request ended (`failure` undefined: the provider answered). */
  async settle(
    grant: { id: string; clientRef: string },
    probe: boolean,
    failure: TokenEndpointError | undefined,
  ): Promise<void> {
    if (failure?.code === 'not_sent') return;
    const { clientRef } = grant;
    const outcome = paceOutcome(failure);
    // Only a probe's answer can end a degraded spell: any other answer is no news for the pacer,
    // and skipping it keeps the commonest refresh free of a round trip.
    if (outcome.kind === 'answered' && !probe) return;
    const transition = await this.#bounded(
      this.deps.pacer.report(clientRef, grant.id, outcome, probe),
      'report',
    );
    if (!transition) return;
    const { name } = await this.#client(clientRef);
    if (transition.kind === 'degraded') {
      this.deps.logger.warn(
        { client: name, reason: transition.reason },
        transition.reason === 'throttled'
          ? 'client degraded: the provider asked us to slow down; its refreshes wait, one probe at a time'
          : 'client degraded: a burst of transient failures; its refreshes wait, one probe at a time',
      );
    } else {
      this.deps.logger.info({ client: name }, 'client recovered: its probe was answered');
    }
    this.deps.onTransition({ id: clientRef, name }, transition);
  }

  async #client(clientRef: string): Promise<{ limit: RateLimit | undefined; name: string }> {
    const cached = this.#limits.get(clientRef);
    if (cached && this.#now() - cached.at < LIMIT_CACHE_MS) return cached;
    const client = await this.deps.clients.get(clientRef);
    const entry = { limit: client?.profile.rateLimit, name: client?.name ?? clientRef, at: this.#now() };
    this.#limits.set(clientRef, entry);
    return entry;
  }

  async #bounded<T>(work: Promise<T>, what: string): Promise<T | undefined> {
    try {
      const result = await withTimeout(work, PACER_TIMEOUT_MS);
      if (result !== TIMED_OUT) return result;
      this.deps.logger.debug({ what }, 'pacer did not answer in time; not pacing this request');
    } catch (err) {
      this.deps.logger.warn(
        { what, err: { message: (err as Error).message } },
        'pacer failed; not pacing this request',
      );
    }
    return undefined;
  }
}
