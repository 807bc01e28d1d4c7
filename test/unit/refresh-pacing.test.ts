import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { TokenEndpointError } from '../../src/oauth/token-errors.js';
import type { ClientPacer } from '../../src/pacing/client-pacer.js';
import { RefreshPacing } from '../../src/refresh/refresh-pacing.js';

/** A pacer that admits everything and counts what reaches it: the in-process pause must not. */
function countingPacer() {
  const calls = { reserve: 0, report: 0 };
  const pacer: ClientPacer = {
    admit: async () => ({ kind: 'go', probe: false }),
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
    const pacing = new RefreshPacing({
      pacer,
      clients: {
        get: async () =>
          ({ name: 'x', updatedAt: 1, profile: { rateLimit: { requestsPerSecond: 50, burst: 1 } } }) as never,
      },
      onTransition: () => {},
      logger: createLogger({ level: 'silent' }),
      now: () => now,
    });
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
    const pacing = new RefreshPacing({
      pacer,
      clients: { get: async () => ({ name: 'x', updatedAt: 1, profile: {} }) as never },
      onTransition: () => {},
      logger: createLogger({ level: 'silent' }),
    });
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
    const pacing = new RefreshPacing({
      pacer,
      clients: { get: async () => ({ name: 'x', updatedAt: 1, profile: {} }) as never },
      onTransition: () => {},
      logger: createLogger({ level: 'silent' }),
    });
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
    const pacing = new RefreshPacing({
      pacer,
      clients: {
        get: async () =>
          ({ name: 'x', updatedAt: 1, profile: { rateLimit: { requestsPerSecond: 50, burst: 1 } } }) as never,
      },
      onTransition: () => {},
      logger: createLogger({ level: 'silent' }),
    });
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
});
