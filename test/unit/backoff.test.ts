import { describe, expect, it } from 'vitest';
import { DEFAULT_BACKOFF as P, retryDelayMs } from '../../src/policy/backoff.js';

const low = () => 0;
const high = () => 0.999_999_9;

describe('retryDelayMs', () => {
  it('doubles with each failure', () => {
    expect([1, 2, 3, 4].map((n) => retryDelayMs({ consecutiveFailures: n }, P, low))).toEqual([
      2_500, 5_000, 10_000, 20_000,
    ]);
    expect(retryDelayMs({ consecutiveFailures: 1 }, P, high)).toBe(5_000);
  });

  it('caps at maxMs', () => {
    expect(retryDelayMs({ consecutiveFailures: 10 }, P, high)).toBe(P.maxMs);
    expect(retryDelayMs({ consecutiveFailures: 10 }, P, low)).toBe(P.maxMs / 2);
  });

  it('keeps jitter within half to all of the exponential delay', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1_000; i++) {
      const d = retryDelayMs({ consecutiveFailures: 3 });
      expect(d).toBeGreaterThanOrEqual(10_000);
      expect(d).toBeLessThanOrEqual(20_000);
      seen.add(Math.floor(d / 1_000));
    }
    expect(seen.size).toBeGreaterThanOrEqual(9);
  });

  it('never retries sooner than Retry-After', () => {
    expect(retryDelayMs({ consecutiveFailures: 1, retryAfterMs: 120_000 }, P, high)).toBe(120_000);
    expect(retryDelayMs({ consecutiveFailures: 1, retryAfterMs: 1_000 }, P, low)).toBe(2_500);
    expect(retryDelayMs({ consecutiveFailures: 1, retryAfterMs: 1_500.2 }, { ...P, baseMs: 0 }, low)).toBe(
      1_501,
    );
  });

  it('caps Retry-After and ignores nonsense values', () => {
    expect(retryDelayMs({ consecutiveFailures: 1, retryAfterMs: 7 * 86_400_000 }, P, low)).toBe(
      P.maxRetryAfterMs,
    );
    for (const v of [0, -1, Number.NaN]) {
      expect(retryDelayMs({ consecutiveFailures: 1, retryAfterMs: v }, P, low)).toBe(2_500);
    }
  });

  it('stays finite and capped for very large or odd failure counts', () => {
    for (const n of [1_100, 1e9, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY]) {
      expect(retryDelayMs({ consecutiveFailures: n }, P, high)).toBe(P.maxMs);
    }
    expect(retryDelayMs({ consecutiveFailures: 1_100 }, { ...P, baseMs: 0 }, high)).toBe(0);
    for (const n of [0, -3, Number.NaN]) expect(retryDelayMs({ consecutiveFailures: n }, P, low)).toBe(2_500);
  });
});
