import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientRepository } from '../grants/ports.js';
import type { Logger } from '../log/logger.js';
import type { TokenEndpointError } from '../oauth/token-errors.js';
import type { Admission, ClientPacer, PaceTransition, Reservation } from '../pacing/client-pacer.js';
import { ColdStartGate } from '../pacing/cold-start-gate.js';
import { ADMIT_MEMO_MS, PROBE_WAIT_MS, paceOutcome, RESUME_SPREAD_MS } from '../pacing/pace-policy.js';
import type { RateLimit } from '../pacing/rate-limit.js';
import { TIMED_OUT, withTimeout } from '../util/with-timeout.js';
import type { RefreshTrigger } from './outcomes.js';

const HEALTHY: Admission = { kind: 'go', probe: false };

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
  /** Told once, across every replica, when a client becomes degraded or failing, or recovers. */
  onTransition: (client: { id: string; name: string }, transition: PaceTransition) => void;
  logger: Logger;
  now?: () => number;
  random?: () => number;
}

/** What pacing needs of a client, read from the store at most every LIMIT_CACHE_MS. */
interface ClientFacts {
  limit: RateLimit | undefined;
  name: string;
  /** Its `updatedAt`: a client changed since its incident gets a probe at once. */
  revision: number;
}

/**
 * The slot's answer, right before the send: go (after any short wait), the time the rate frees up,
 * the end of a pause this process learned of after the refresh was admitted, or a time to ask
 * again when a cold client's canary was refused.
 */
export type Slot =
  | { kind: 'go' }
  | Extract<Reservation, { kind: 'later' }>
  | { kind: 'later'; retryAt: number; reason: 'paused' | 'probing' };

/**
 * The refresher's side of client-wide pacing: asks before a claim whether the client may send at
 * all, takes a rate slot just before the fence, reports after the commit, and turns a reported
 * transition into one log line and one observer call.
 */
export class RefreshPacing {
  readonly #limits = new Map<string, ClientFacts & { at: number }>();
  /**
   * Pauses this process has learned of (its own 429s, or an admission turned away), by client. A
   * refresh admitted before a pause is in its claim or fence when the pause lands; the slot stops
   * it there without a round trip, so a storm's first wave is what is already on the wire.
   */
  readonly #pausedUntil = new Map<string, number>();
  /** Clients admitted with nothing to report, until when they are admitted again without asking. */
  readonly #healthyUntil = new Map<string, number>();
  /** The admission question out for a client, if any: those arriving meanwhile wait for its answer. */
  readonly #asking = new Map<string, Promise<Admission | undefined>>();
  /** A cold client's first request goes alone: a storm's first wave is one request. */
  readonly #gate: ColdStartGate;
  readonly #now: () => number;
  readonly #random: () => number;

  constructor(private readonly deps: PacingDeps) {
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
    this.#gate = new ColdStartGate(this.#now);
  }

  /**
   * Paused, or its probe out elsewhere: `later`. Failing: `refused` for a scheduled refresh (its
   * grant stops without a request), `later` for a reader (invariant 10), the probe for an
   * operator's retry. A Redis that does not answer lets it go.
   */
  async admit(clientRef: string, trigger: RefreshTrigger): Promise<Admission> {
    // An operator's refresh always asks: it may be the probe.
    const operator = trigger === 'forced';
    if (!operator) {
      // A healthy answer to a question already out is everyone's; any other is asked for alone
      // (it may hand out the probe).
      const asking = this.#asking.get(clientRef);
      if (asking) await asking.catch(() => {});
      if ((this.#healthyUntil.get(clientRef) ?? 0) > this.#now()) return HEALTHY;
    }
    const asked = this.#ask(clientRef, operator);
    if (!operator && !this.#asking.has(clientRef)) {
      this.#asking.set(clientRef, asked);
      const done = () => {
        if (this.#asking.get(clientRef) === asked) this.#asking.delete(clientRef);
      };
      asked.then(done, done);
    }
    const admission = await asked;
    if (admission?.kind === 'later' && admission.reason === 'paused')
      this.#pause(clientRef, admission.retryAt);
    if (admission?.kind === 'refused' && trigger !== 'schedule') {
      return { kind: 'later', retryAt: admission.retryAt, reason: 'refused' };
    }
    return admission ?? HEALTHY;
  }

  async #ask(clientRef: string, operator: boolean): Promise<Admission | undefined> {
    const { revision } = await this.#client(clientRef);
    const admission = await this.#bounded(this.deps.pacer.admit(clientRef, { operator, revision }), 'admit');
    if (admission?.kind === 'go' && !admission.probe) {
      this.#healthyUntil.set(clientRef, this.#now() + ADMIT_MEMO_MS);
    } else this.#healthyUntil.delete(clientRef);
    return admission;
  }

  /**
   * Waits out a short rate-limit slot itself; a longer wait is `later`, and so is a pause learned
   * since the admission (but for the probe, which is what ends it). A cold client's requests wait
   * for its canary first. No limit: go at once.
   */
  async slot(clientRef: string, probe: boolean): Promise<Slot> {
    if (probe) return this.#rateSlot(clientRef);
    const paused = this.#paused(clientRef);
    if (paused) return paused;
    const pass = await this.#gate.pass(clientRef);
    if (pass === 'held') {
      // A pause the canary learned is news for those that waited on it; otherwise ask again soon.
      const retryAt = this.#now() + PROBE_WAIT_MS + Math.round(this.#random() * RESUME_SPREAD_MS);
      return this.#paused(clientRef) ?? { kind: 'later', retryAt, reason: 'probing' };
    }
    const slot = await this.#rateSlot(clientRef);
    // A canary the rate limit turned away sent nothing: the next request takes its turn.
    if (pass === 'canary' && slot.kind === 'later') this.#gate.settled(clientRef, 'unanswered');
    return slot;
  }

  async #rateSlot(clientRef: string): Promise<Slot> {
    const { limit } = await this.#client(clientRef);
    if (!limit) return { kind: 'go' };
    const reservation = await this.#bounded(this.deps.pacer.reserve(clientRef, limit), 'reserve');
    if (reservation?.kind === 'later') return reservation;
    if (reservation && reservation.waitMs > 0) await sleep(reservation.waitMs);
    return { kind: 'go' };
  }

  /**
   * Reports how the request ended (`failure` undefined: the provider answered). True when the
   * answer was a refusal of the client's credentials that its incident now covers: the grant's own
   * `client_error` alert is folded into the client's.
   */
  async settle(
    grant: { id: string; clientRef: string },
    probe: boolean,
    failure: TokenEndpointError | undefined,
  ): Promise<boolean> {
    const { clientRef } = grant;
    if (failure?.code === 'not_sent') {
      this.#gate.settled(clientRef, 'unanswered');
      return false;
    }
    const outcome = paceOutcome(failure);
    // Trouble of our own is news the memo must not hide from the next admission.
    if (outcome.kind !== 'answered') this.#healthyUntil.delete(clientRef);
    if (outcome.kind === 'throttled') this.#pause(clientRef, this.#now() + outcome.pauseMs);
    // After the pause, so the canary's waiters see it.
    this.#gate.settled(
      clientRef,
      outcome.kind === 'answered' ? 'answered' : outcome.kind === 'transient' ? 'unanswered' : 'held',
    );
    // Only a probe's answer can end a degraded spell: any other answer is no news for the pacer,
    // and skipping it keeps the commonest refresh free of a round trip.
    if (outcome.kind === 'answered' && !probe) return false;
    const { name, revision } = await this.#client(clientRef);
    const reported = await this.#bounded(
      this.deps.pacer
        .report(clientRef, grant.id, outcome, probe, revision)
        .then((transition) => ({ transition })),
      'report',
    );
    const transition = reported?.transition;
    if (transition) {
      if (transition.kind === 'recovered') this.#pausedUntil.delete(clientRef);
      this.#log(name, transition);
      this.deps.onTransition({ id: clientRef, name }, transition);
    }
    return reported !== undefined && outcome.kind === 'refused';
  }

  #paused(clientRef: string): Slot | undefined {
    const pausedUntil = this.#pausedUntil.get(clientRef);
    if (pausedUntil === undefined) return undefined;
    if (pausedUntil > this.#now()) return { kind: 'later', retryAt: pausedUntil, reason: 'paused' };
    this.#pausedUntil.delete(clientRef);
    return undefined;
  }

  #pause(clientRef: string, until: number): void {
    if (until > (this.#pausedUntil.get(clientRef) ?? 0)) this.#pausedUntil.set(clientRef, until);
  }

  #log(client: string, transition: PaceTransition): void {
    const { logger } = this.deps;
    switch (transition.kind) {
      case 'degraded':
        logger.warn(
          { client, reason: transition.reason },
          transition.reason === 'throttled'
            ? 'client degraded: the provider asked us to slow down; its refreshes wait, one probe at a time'
            : 'client degraded: a burst of transient failures; its refreshes wait, one probe at a time',
        );
        return;
      case 'failing':
        logger.error(
          { client, errorCode: transition.code },
          'client failing: the provider refused its credentials; its grants stop as client_error without a request each (fix the client, then grantkeeper retry)',
        );
        return;
      case 'recovered':
        logger.info({ client, from: transition.from }, 'client recovered: its probe was answered');
    }
  }

  async #client(clientRef: string): Promise<ClientFacts> {
    const cached = this.#limits.get(clientRef);
    if (cached && this.#now() - cached.at < LIMIT_CACHE_MS) return cached;
    const client = await this.deps.clients.get(clientRef);
    const entry = {
      limit: client?.profile.rateLimit,
      name: client?.name ?? clientRef,
      revision: client?.updatedAt ?? 0,
      at: this.#now(),
    };
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
