import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientRepository } from '../grants/ports.js';
import type { Logger } from '../log/logger.js';
import type { TokenEndpointError } from '../oauth/token-errors.js';
import type { ClientPacer, PaceDecision, PaceTransition } from '../pacing/client-pacer.js';
import { paceOutcome } from '../pacing/pace-policy.js';
import type { RateLimit } from '../pacing/rate-limit.js';

/** A client's rate limit is read from the store at most this often per process. */
const LIMIT_CACHE_MS = 10_000;
/**
 * Pacing must never hold a refresh hostage: the queue connection buffers commands while Redis is
 * away, so an answer slower than this lets the request go unpaced (the store's lease still holds).
 */
const PACER_TIMEOUT_MS = 500;
const TIMED_OUT = Symbol('timed out');

export interface PacingDeps {
  pacer: ClientPacer;
  clients: Pick<ClientRepository, 'get'>;
  /** Told once, across every replica, when a client becomes degraded or recovers. */
  onTransition: (client: { id: string; name: string }, transition: PaceTransition) => void;
  logger: Logger;
  now?: () => number;
}

/** Leave to send one request: `probe` means its outcome decides whether the client recovered. */
export type Admission = { kind: 'go'; probe: boolean } | Extract<PaceDecision, { kind: 'later' }>;

/**
 * The refresher's side of client-wide pacing: asks before a request, reports after it, and turns
 * a reported transition into one log line and one observer call.
 */
export class RefreshPacing {
  readonly #limits = new Map<string, { limit: RateLimit | undefined; name: string; at: number }>();
  readonly #now: () => number;

  constructor(private readonly deps: PacingDeps) {
    this.#now = deps.now ?? Date.now;
  }

  /** Waits out a short rate-limit slot itself; a longer wait, a pause or a probe elsewhere is `later`. */
  async admit(clientRef: string): Promise<Admission> {
    const { limit } = await this.#client(clientRef);
    const decision = await this.#bounded(this.deps.pacer.acquire(clientRef, limit), 'acquire');
    if (!decision) return { kind: 'go', probe: false };
    if (decision.kind === 'later') return decision;
    if (decision.waitMs > 0) await sleep(decision.waitMs);
    return { kind: 'go', probe: decision.probe };
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
    const settled = work.then(
      (value) => ({ value }),
      (err: Error) => ({ err }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMED_OUT), PACER_TIMEOUT_MS);
    });
    const result = await Promise.race([settled, timeout]);
    clearTimeout(timer);
    if (result === TIMED_OUT) {
      this.deps.logger.debug({ what }, 'pacer did not answer in time; not pacing this request');
      return undefined;
    }
    if ('err' in result) {
      this.deps.logger.warn(
        { what, err: { message: result.err.message } },
        'pacer failed; not pacing this request',
      );
      return undefined;
    }
    return result.value;
  }
}
