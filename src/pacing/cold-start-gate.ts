import { setTimeout as sleep } from 'node:timers/promises';
import { CANARY_WAIT_MS, COLD_AFTER_MS } from './pace-policy.js';

/**
 * What a request of a cold client may do: send, send as the canary, or stop because the canary
 * learned the client must not send now.
 */
export type GatePass = 'go' | 'canary' | 'held';

/**
 * How a request ended, as the gate sees it: answered, `held` (a 429 paused the client, or its
 * credentials were refused: nobody should send now), or unanswered (a timeout, a 5xx, not sent).
 */
export type GateOutcome = 'answered' | 'held' | 'unanswered';

interface Canary {
  ended: Promise<void>;
  end: (outcome: GateOutcome) => void;
  outcome?: GateOutcome;
  openedAt: number;
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
   * the others, `held` when the canary learned nobody should send now and `go` once it was answered
   * or has been out for the wait (a slow provider: waiting longer would only delay the burst). A
   * canary that ended unanswered (a timeout, a 5xx) hands the turn to the next caller.
   */
  async pass(clientRef: string): Promise<GatePass> {
    for (;;) {
      if (this.#warm(clientRef)) return 'go';
      const now = this.now();
      const out = this.#canaries.get(clientRef);
      // A canary out for a cold spell was lost (its refresh ended without telling): it is replaced.
      if (!out || now - out.openedAt >= this.coldAfterMs) {
        this.#open(clientRef, now);
        return 'canary';
      }
      // Out for the wait, it is slow: the provider takes its time, no reason to hold the rest back.
      const slowAt = out.openedAt + this.waitMs;
      if (slowAt <= now) return 'go';
      await Promise.race([out.ended, sleep(slowAt - now, undefined, { ref: false })]);
      if (out.outcome === 'held') return 'held';
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
      openedAt: now,
    };
    this.#canaries.set(clientRef, canary);
  }
}
