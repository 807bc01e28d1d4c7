import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveProvider } from '../../src/oauth/providers.js';
import { parseTokenResponse } from '../../src/oauth/token-response.js';
import {
  DEFAULT_GRANT_WARNING_WINDOWS_MS,
  decodeMark,
  dueWarning,
  encodeMark,
  type WarnedMark,
} from '../../src/policy/expiry-warnings.js';
import { aheadOf, grantHorizon } from '../../src/policy/grant-horizon.js';
import { refreshTokenEnd } from '../../src/policy/refresh-plan.js';

const DAY = 86_400_000;
const WINDOWS = DEFAULT_GRANT_WARNING_WINDOWS_MS;

describe('dueWarning', () => {
  const deadline = 100 * DAY;

  it('warns at 7 days, once; again at 1 day, once; nothing before or between', () => {
    expect(dueWarning(deadline, WINDOWS, null, deadline - 8 * DAY)).toBeUndefined();
    expect(dueWarning(deadline, WINDOWS, null, deadline - 7 * DAY)).toBe(7 * DAY);
    const week: WarnedMark = { deadline, windowMs: 7 * DAY };
    expect(dueWarning(deadline, WINDOWS, week, deadline - 3 * DAY)).toBeUndefined();
    expect(dueWarning(deadline, WINDOWS, week, deadline - DAY)).toBe(DAY);
    const day: WarnedMark = { deadline, windowMs: DAY };
    expect(dueWarning(deadline, WINDOWS, day, deadline - 1)).toBeUndefined();
    expect(dueWarning(deadline, WINDOWS, day, deadline + DAY)).toBeUndefined();
  });

  it('a deadline first seen inside the 1-day window gets the 1-day warning only', () => {
    expect(dueWarning(deadline, WINDOWS, null, deadline - 12 * 3600_000)).toBe(DAY);
  });

  it('a moved deadline starts afresh; a mark for another deadline does not silence it', () => {
    const old: WarnedMark = { deadline: deadline - 30 * DAY, windowMs: DAY };
    expect(dueWarning(deadline, WINDOWS, old, deadline - 5 * DAY)).toBe(7 * DAY);
  });

  it('property: replaying the decision, each window warns at most once per deadline, narrowing', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -2 * DAY, max: 10 * DAY }), { minLength: 1, maxLength: 40 }),
        (offsets) => {
          // Times move forward, as a sweep's clock does.
          const times = offsets.map((o) => deadline - o).sort((a, b) => a - b);
          let mark: WarnedMark | null = null;
          const sent: number[] = [];
          for (const now of times) {
            const w = dueWarning(deadline, WINDOWS, mark, now);
            if (w === undefined) continue;
            expect(deadline - now).toBeLessThanOrEqual(w);
            sent.push(w);
            mark = { deadline, windowMs: w };
          }
          expect(new Set(sent).size).toBe(sent.length);
          expect([...sent].sort((a, b) => b - a)).toEqual(sent);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('keeps its mark as text and reads damaged text as nothing warned', () => {
    const mark = { deadline: 1_900_000_000_000, windowMs: DAY };
    expect(decodeMark(encodeMark(mark))).toEqual(mark);
    expect(decodeMark(null)).toBeNull();
    expect(decodeMark('paused')).toBeNull();
    expect(decodeMark('1@2@3')).toBeNull();
  });
});

describe('hard ends', () => {
  it('parses refresh_token_expires_in like expires_in, and an unusable one as absent', () => {
    expect(
      parseTokenResponse({ access_token: 'a', refresh_token_expires_in: 864000 }).refreshTokenExpiresIn,
    ).toBe(864000);
    expect(
      parseTokenResponse({ access_token: 'a', refresh_token_expires_in: '60' }).refreshTokenExpiresIn,
    ).toBe(60);
    expect(
      'refreshTokenExpiresIn' in parseTokenResponse({ access_token: 'a', refresh_token_expires_in: 'x' }),
    ).toBe(false);
  });

  it("a stated lifetime wins, measured from the send; else a consent takes the preset's fixed limit", () => {
    const fixed = { seconds: 7 * 86_400, reason: 'Google Testing' };
    expect(refreshTokenEnd({ refreshTokenExpiresIn: 60 }, 1000, fixed)).toEqual({
      at: 61_000,
      reason: 'refresh_token_expires_in',
    });
    expect(refreshTokenEnd({}, 1000, fixed)).toEqual({ at: 1000 + 7 * DAY, reason: 'Google Testing' });
    expect(refreshTokenEnd({ refreshTokenExpiresIn: 0 }, 1000)).toBeUndefined();
    expect(refreshTokenEnd({}, 1000)).toBeUndefined();
  });

  it("presets carry the fixed limits a consent gets: Google's Testing status 7 days, Microsoft SPA 24 h", async () => {
    const testing = await resolveProvider({ kind: 'google', testing: true });
    expect(testing.refreshTokenLifetime?.seconds).toBe(7 * 86_400);
    expect(refreshTokenEnd({}, 0, testing.refreshTokenLifetime)?.reason).toMatch(/Testing status/);
    expect((await resolveProvider({ kind: 'microsoft', spa: true })).refreshTokenLifetime?.seconds).toBe(
      86_400,
    );
    expect((await resolveProvider({ kind: 'google' })).refreshTokenLifetime).toBeUndefined();
    expect((await resolveProvider({ kind: 'microsoft' })).refreshTokenLifetime).toBeUndefined();
  });

  it('needs consent by the earlier of the hard end and the idle deadline; service grants by neither', () => {
    const base = { kind: 'authorization_code' as const, refreshTokenUsedAt: 0 };
    const idleOnly = grantHorizon(
      { ...base, refreshExpiresAt: null, refreshExpiresReason: null },
      90 * 86_400,
    );
    expect(idleOnly.renewableUntil).toBeNull();
    expect(idleOnly.needsConsentBy?.at).toBe(90 * DAY);
    expect(idleOnly.needsConsentBy?.reason).toMatch(/idle limit.*90 days/);
    const hard = grantHorizon({ ...base, refreshExpiresAt: DAY, refreshExpiresReason: 'SPA' }, 90 * 86_400);
    expect(hard.renewableUntil).toEqual({ at: DAY, reason: 'SPA' });
    expect(hard.needsConsentBy).toEqual({ at: DAY, reason: 'SPA' });
    const service = grantHorizon(
      { ...base, kind: 'client_credentials', refreshExpiresAt: DAY, refreshExpiresReason: 'x' },
      90 * 86_400,
    );
    expect(service).toEqual({ renewableUntil: null, needsConsentBy: null });
  });
});

describe('aheadOf (grantkeeper status)', () => {
  it('lists grants and client secrets ending within the horizon, soonest first, and nothing beyond it', () => {
    const grant = (id: string, refreshExpiresAt: number | null, refreshTokenUsedAt = 0) => ({
      id,
      label: `@${id}`,
      clientRef: 'c1',
      kind: 'authorization_code' as const,
      refreshTokenUsedAt,
      refreshExpiresAt,
      refreshExpiresReason: refreshExpiresAt === null ? null : 'refresh_token_expires_in',
    });
    const client = (id: string, expiresAt: number | null, hasSecret = true) => ({
      id,
      name: id,
      hasSecret,
      secret: { expiresAt },
      profile: { refreshIdleLimitSec: 90 * 86_400 },
    });
    const items = aheadOf(
      [grant('hard', 20 * DAY, 80 * DAY), grant('idle', null, -70 * DAY), grant('far', 40 * DAY, 80 * DAY)],
      [client('c1', 10 * DAY), client('c2', 31 * DAY), client('pub', 1 * DAY, false)],
      0,
      30 * DAY,
    );
    expect(items.map((i) => [i.kind, i.name, i.at])).toEqual([
      ['client_secret', 'c1', 10 * DAY],
      ['grant', '@hard', 20 * DAY],
      ['grant', '@idle', 20 * DAY],
    ]);
    expect(items[2]?.reason).toMatch(/idle limit/);
  });
});
