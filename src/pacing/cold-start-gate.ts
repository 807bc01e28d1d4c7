import { setTimeout as sleep } from 'node:timers/promises';
import { CANARY_WAIT_MS, COLD_AFTER_MS } from './pace-policy.js';

/**
 * What a request of a cold client may do: send, send as the canary, stop because the canary learned
 * the client must not send now, or stop because no answer came within the wait.
 */
export type GatePass = 'go' | 'canary' | 'held' | 'timeout';

/**
 * How a request ended, as the gate sees it: answered, `held` (a 429 paused the client, or its
 * credentials were refused: nobody should send now), or unanswered (a timeout, a 5xx).
 */
export type GateOutcome = 'answered' | 'held' | 'unanswered';

interface Canary {
  ended: Promise<void>;
  end: (outcome: GateOutcome) => void;
  outcome?: GateOutcome;
  /** Presumed lost after this (its refresh ended without telling): another may go. */
  staleAt: number;
}

/**
 * One process's cold start per client: the first request after a quiet spell goes alone and the
 * others wait for how it ended, so what they learn (a pause, an answer) comes before they send.
 * In-process and without a round trip: across replicas a burst costs one canary each.
 */
export class ColdStartGate {
  readonly #lastAnswer = new Map<string, number>();
  readonly #canaries = new Map<string, Canary>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly coldAfterMs = COLD_AFTER_MS,
    private readonly waitMs = CANARY_WAIT_MS,
  ) {}

  /**
   * `go` at once while the client answered lately; otherwise `canary` for the first caller and, for
   * the others, `go` once the canary was answered, `held` when it learned nobody should send now, `timeout`
   * when it told nothing within the wait. A canary that ended unanswered (a timeout, a 5xx) hands
   * the turn to the next caller.
   */
  async pass(clientRef: string): Promise<GatePass> {
    const deadline = this.now() + this.waitMs;
    let waited = false;
    for (;;) {
      if (this.#warm(clientRef)) return 'go';
      const now = this.now();
      if (waited && now >= deadline) return 'timeout';
      const out = this.#canaries.get(clientRef);
      if (!out || out.staleAt <= now) {
        this.#open(clientRef, now);
        return 'canary';
      }
      await Promise.race([
        out.ended,
        sleep(Math.min(deadline, out.staleAt) - now, undefined, { ref: false }),
      ]);
      if (out.outcome === 'held') return 'held';
      waited = true;
    }
  }

  /** How a request of the client ended: an answer warms the client; any end brings its canary back. */
  settled(clientRef: string, outcome: GateOutcome): void {
    if (outcome === 'answered') this.#lastAnswer.set(clientRef, this.now());
    const out = this.#canaries.get(clientRef);
    if (!out) return;
    this.#canaries.delete(clientRef);
    out.end(outcome);
  }

  #warm(clientRef: string): boolean {
    const at = this.#lastAnswer.get(clientRef);
    return at !== undefined && this.now() - at < this.coldAfterMs;
  }

  #open(clientRef: string, now: number): void {
    let resolve = () => {};
    const ended = new Promise<void>((r) => {
      resolve = r;
    });
    const canary: Canary = {
      ended,
      end: (outcome) => {
        canary.outcome = outcome;
        resolve();
      },
      staleAt: now + this.waitMs,
    };
    this.#canaries.set(clientRef, canary);
  }
}
