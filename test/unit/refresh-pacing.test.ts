import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { TokenEndpointError } from '../../src/oauth/token-errors.js';
import type { Admission, ClientPacer } from '../../src/pacing/client-pacer.js';
import { RefreshPacing } from '../../src/refresh/refresh-pacing.js';

/** A pacer that admits everything and counts what reaches it: the in-process pause must not. */
function countingPacer() {
  const calls = { admit: 0, reserve: 0, report: 0 };
  const pacer: ClientPacer = {
    admit: async () => {
      calls.admit += 1;
      return { kind: 'go', probe: false };
    },
    reserve: async () => {
      calls.reserve += 1;
      return { kind: 'go', waitMs: 0 };
    },
    report: async () => {
      calls.report += 1;
      return { kind: 'degraded', reason: 'throttled' };
    },
    condition: async () => ({ state: 'ok' }),
  };
  return { pacer, calls };
}

/** Pacing over `pacer` for one client named x, rate-limited to 50/s with a burst of 1 when `limited`. */
function pacingOver(pacer: ClientPacer, options: { limited?: boolean; now?: () => number } = {}) {
  const profile = options.limited ? { rateLimit: { requestsPerSecond: 50, burst: 1 } } : {};
  return new RefreshPacing({
    pacer,
    clients: { get: async () => ({ name: 'x', updatedAt: 1, profile }) as never },
    onTransition: () => {},
    logger: createLogger({ level: 'silent' }),
    ...(options.now ? { now: options.now } : {}),
  });
}

const throttled = new TokenEndpointError({
  kind: 'transient',
  outcome: 'retry',
  code: 'rate_limited',
  status: 429,
  retryAfterMs: 30_000,
});

describe('RefreshPacing: a pause learned in this process', () => {
  it('stops refreshes already admitted at the slot, but not the probe, until the pause ends', async () => {
    let now = 1_000_000;
    const { pacer, calls } = countingPacer();
    const pacing = pacingOver(pacer, { limited: true, now: () => now });
    expect(await pacing.slot('c1', false)).toEqual({ kind: 'go' });
    expect(calls.reserve).toBe(1);

    await pacing.settle({ id: 'g1', clientRef: 'c1' }, false, throttled);
    expect(await pacing.slot('c1', false)).toEqual({
      kind: 'later',
      retryAt: now + 30_000,
      reason: 'paused',
    });
    // No round trip for the refusal; another client is not held.
    expect(calls.reserve).toBe(1);
    expect(await pacing.slot('c2', false)).toEqual({ kind: 'go' });
    expect(await pacing.slot('c1', true)).toEqual({ kind: 'go' });

    now += 30_001;
    expect(await pacing.slot('c1', false)).toEqual({ kind: 'go' });
  });

  it("holds a cold client's burst for its canary, and a 429 on the canary stops the burst unsent", async () => {
    const { pacer, calls } = countingPacer();
    const pacing = pacingOver(pacer);
    expect(await pacing.slot('c1', false)).toEqual({ kind: 'go' });
    const burst = Array.from({ length: 4 }, () => pacing.slot('c1', false));
    await pacing.settle({ id: 'g1', clientRef: 'c1' }, false, throttled);
    const slots = await Promise.all(burst);
    expect(slots.map((s) => s.kind === 'later' && s.reason)).toEqual([
      'paused',
      'paused',
      'paused',
      'paused',
    ]);
    expect(calls.report).toBe(1);
  });

  it("lets a cold client's burst go once its canary is answered", async () => {
    const { pacer } = countingPacer();
    const pacing = pacingOver(pacer);
    expect(await pacing.slot('c1', false)).toEqual({ kind: 'go' });
    const burst = Array.from({ length: 4 }, () => pacing.slot('c1', false));
    let released = 0;
    for (const slot of burst) void slot.then(() => (released += 1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(released).toBe(0);
    await pacing.settle({ id: 'g1', clientRef: 'c1' }, false, undefined);
    expect(await Promise.all(burst)).toEqual(Array(4).fill({ kind: 'go' }));
  });

  it('hands the turn on when the rate limit turns the canary away unsent', async () => {
    const { pacer } = countingPacer();
    let reserved = 0;
    pacer.reserve = async () => {
      reserved += 1;
      return reserved === 1
        ? { kind: 'later', retryAt: Date.now() + 5_000, reason: 'rate' }
        : { kind: 'go', waitMs: 0 };
    };
    const pacing = pacingOver(pacer, { limited: true });
    expect((await pacing.slot('c1', false)).kind).toBe('later');
    // The next request is the new canary at once, not held for the wait behind one that never sends.
    let done = false;
    const next = pacing.slot('c1', false).then((slot) => {
      done = true;
      return slot;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(done).toBe(true);
    expect(await next).toEqual({ kind: 'go' });
  });

  it('admits a healthy client again without asking for a short while, and asks at once after trouble', async () => {
    let now = 1_000_000;
    const { pacer, calls } = countingPacer();
    const pacing = pacingOver(pacer, { now: () => now });
    const healthy = { kind: 'go', probe: false };
    expect(await pacing.admit('c1', 'schedule')).toEqual(healthy);
    expect(await pacing.admit('c1', 'schedule')).toEqual(healthy);
    expect(calls.admit).toBe(1);
    // An operator's refresh may be the probe: it always asks.
    await pacing.admit('c1', 'forced');
    expect(calls.admit).toBe(2);
    await pacing.admit('c2', 'schedule');
    expect(calls.admit).toBe(3);

    now += 100;
    await pacing.admit('c1', 'schedule');
    expect(calls.admit).toBe(4);

    // A failure of our own ends the memo: the breaker may have opened on it.
    const unavailable = new TokenEndpointError({
      kind: 'transient',
      outcome: 'retry',
      code: 'server_error',
      status: 503,
    });
    await pacing.settle({ id: 'g1', clientRef: 'c1' }, false, unavailable);
    await pacing.admit('c1', 'schedule');
    expect(calls.admit).toBe(5);
  });

  it('asks once for a burst of admissions arriving together, and alone when the answer is not healthy', async () => {
    const { pacer, calls } = countingPacer();
    let answer: Admission = { kind: 'go', probe: false };
    pacer.admit = async () => {
      calls.admit += 1;
      await new Promise((resolve) => setTimeout(resolve, 10));
      return answer;
    };
    const pacing = pacingOver(pacer);
    const burst = await Promise.all(Array.from({ length: 8 }, () => pacing.admit('c1', 'schedule')));
    expect(burst).toEqual(Array(8).fill({ kind: 'go', probe: false }));
    expect(calls.admit).toBe(1);

    // Degraded: each asks for itself, so only one of them is handed the probe.
    answer = { kind: 'later', retryAt: Date.now() + 1_000, reason: 'probing' };
    await Promise.all(Array.from({ length: 3 }, () => pacing.admit('c2', 'schedule')));
    expect(calls.admit).toBe(1 + 3);
  });
});
