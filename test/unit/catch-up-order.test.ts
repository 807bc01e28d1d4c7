import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { byUrgency, catchUpPriority, PRIORITY_LIMIT } from '../../src/policy/catch-up-order.js';

const NOW = Date.UTC(2026, 11, 3, 12);
const DAY = 86_400_000;

describe('catch-up order', () => {
  it('ranks a sooner (or longer expired) access expiry as more urgent, within BullMQ’s range', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -60 * DAY, max: 60 * DAY }),
        fc.integer({ min: -60 * DAY, max: 60 * DAY }),
        (a, b) => {
          const pa = catchUpPriority(NOW + a, NOW);
          const pb = catchUpPriority(NOW + b, NOW);
          expect(Number.isInteger(pa) && pa >= 1 && pa <= PRIORITY_LIMIT).toBe(true);
          if (a <= b) expect(pa).toBeLessThanOrEqual(pb);
        },
      ),
    );
    // A second apart is a level apart near now; far out it saturates instead of wrapping.
    expect(catchUpPriority(NOW + 1000, NOW) - catchUpPriority(NOW, NOW)).toBe(1);
    expect(catchUpPriority(NOW - 365 * DAY, NOW)).toBe(1);
    expect(catchUpPriority(NOW + 365 * DAY, NOW)).toBe(PRIORITY_LIMIT);
  });

  it('sorts by access expiry, then by the oldest refresh-token use; unranked grants last', () => {
    const grants = [
      { id: 'late', accessExpiresAt: NOW + 5000, refreshTokenUsedAt: NOW - 10 },
      { id: 'unranked' },
      { id: 'tie-recent', accessExpiresAt: NOW, refreshTokenUsedAt: NOW - 1000 },
      { id: 'tie-old', accessExpiresAt: NOW, refreshTokenUsedAt: NOW - 9000 },
      { id: 'expired', accessExpiresAt: NOW - 60_000, refreshTokenUsedAt: NOW },
    ];
    expect([...grants].sort(byUrgency).map((g) => g.id)).toEqual([
      'expired',
      'tie-old',
      'tie-recent',
      'late',
      'unranked',
    ]);
  });
});
