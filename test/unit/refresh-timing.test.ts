import { describe, expect, it } from 'vitest';
import {
  accessExpiry,
  keepAliveDeadline,
  nextRefreshAt,
  DEFAULT_REFRESH_TIMING as P,
} from '../../src/policy/refresh-timing.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = 1_700_000_000_000;
const FAR = T0 + 365 * DAY;

function due(lifetimeMs: number, random: () => number, extra: { now?: number; keepAlive?: number } = {}) {
  return nextRefreshAt(
    {
      now: extra.now ?? T0,
      accessExpiresAt: T0 + lifetimeMs,
      accessLifetimeMs: lifetimeMs,
      keepAliveDeadline: extra.keepAlive ?? FAR,
    },
    P,
    random,
  );
}

describe('accessExpiry', () => {
  it('counts from our send time', () => {
    expect(accessExpiry(T0, 7200, 3600)).toEqual({
      expiresAt: T0 + 2 * HOUR,
      lifetimeMs: 2 * HOUR,
      defaulted: false,
    });
  });

  it('uses the provider default when expires_in is missing', () => {
    expect(accessExpiry(T0, undefined, 3600)).toEqual({
      expiresAt: T0 + HOUR,
      lifetimeMs: HOUR,
      defaulted: true,
    });
  });

  it('treats 0, negative and NaN as already expired', () => {
    for (const v of [0, -30, Number.NaN]) {
      expect(accessExpiry(T0, v, 3600)).toEqual({ expiresAt: T0, lifetimeMs: 0, defaulted: false });
    }
  });

  it('caps a huge expires_in', () => {
    for (const v of [1e15, Number.POSITIVE_INFINITY]) {
      expect(accessExpiry(T0, v, 3600).lifetimeMs).toBe(P.maxLifetimeMs);
    }
  });
});

describe('nextRefreshAt', () => {
  it('leads by a fraction of the lifetime, bounded by min and max lead', () => {
    const none = () => 0;
    expect(T0 + HOUR - due(HOUR, none)).toBe(P.maxLeadMs); // 20% of 1 h = 12 min > 10 min
    expect(T0 + 20 * 60_000 - due(20 * 60_000, none)).toBe(4 * 60_000);
    expect(T0 + 3_000 - due(3_000, none, { now: T0 - 10_000 })).toBe(P.minLeadMs);
  });

  it('uses half of a tiny lifetime rather than a lead that reaches past issuance', () => {
    expect(due(1_500, () => 0, { now: T0 - 10_000 })).toBe(T0 + 750);
  });

  it('spreads due times across the jitter window, all before expiry', () => {
    const lifetime = 2 * HOUR;
    const expiresAt = T0 + lifetime;
    const lead = P.maxLeadMs;
    const windowStart = expiresAt - lead * (1 + P.jitterFraction);
    const buckets = new Array<number>(10).fill(0);
    for (let i = 0; i < 5_000; i++) {
      const at = due(lifetime, Math.random);
      expect(at).toBeLessThanOrEqual(expiresAt - lead);
      expect(at).toBeGreaterThanOrEqual(windowStart);
      const bucket = Math.min(9, Math.floor(((at - windowStart) / (lead * P.jitterFraction)) * 10));
      buckets[bucket] = (buckets[bucket] ?? 0) + 1;
    }
    // Roughly uniform: every tenth of the window gets a fair share.
    for (const count of buckets) expect(count).toBeGreaterThan(300);
  });

  it('is bound by the keep-alive deadline when that comes first', () => {
    expect(due(30 * DAY, () => 0.5, { keepAlive: T0 + DAY })).toBe(T0 + DAY);
  });

  it('never comes due sooner than minInterval from now', () => {
    expect(due(0, () => 0.5)).toBe(T0 + P.minIntervalMs);
    const expired = accessExpiry(T0, -5, 3600);
    const at = nextRefreshAt(
      {
        now: T0,
        accessExpiresAt: expired.expiresAt,
        accessLifetimeMs: expired.lifetimeMs,
        keepAliveDeadline: FAR,
      },
      P,
    );
    expect(at).toBe(T0 + P.minIntervalMs);
    expect(due(HOUR, () => 0.5, { keepAlive: T0 - DAY })).toBe(T0 + P.minIntervalMs);
  });

  it('schedules a capped huge lifetime within reach of the keep-alive deadline', () => {
    const { expiresAt, lifetimeMs } = accessExpiry(T0, 1e12, 3600);
    const at = nextRefreshAt(
      { now: T0, accessExpiresAt: expiresAt, accessLifetimeMs: lifetimeMs, keepAliveDeadline: T0 + 90 * DAY },
      P,
    );
    expect(at).toBe(T0 + 90 * DAY);
  });
});

describe('keepAliveDeadline', () => {
  it('adds the interval in seconds to the last use', () => {
    expect(keepAliveDeadline(T0, 7 * 86_400)).toBe(T0 + 7 * DAY);
  });
});
