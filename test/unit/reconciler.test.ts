import { describe, expect, it } from 'vitest';
import { Reconciler } from '../../jobs/reconciler.js';
import type { SchedulableGrant } from '../../src/grants/ports.js';
import { createLogger } from '../../src/log/logger.js';

const NOW = 1_000_000_000;

/**
 * A reconciler over fakes that write what happens to `events`: a store of `count` grants due now
 * (none with a job in Redis), paged by id, and a scheduler that queues what it is given.
 */
function reconcilerOver(count: number, intervalMs = 60_000) {
  const events: string[] = [];
  const grants: SchedulableGrant[] = Array.from({ length: count }, (_, i) => ({
    id: `g${String(i).padStart(6, '0')}`,
    version: 0,
    nextRefreshAt: NOW,
    clientRef: 'c1',
  }));
  const store = {
    listSchedulable: async (_dueBefore: number, page: { after?: { id: string }; limit: number }) => {
      const from = page.after ? grants.findIndex((g) => g.id === page.after?.id) + 1 : 0;
      events.push(`list ${from}`);
      return grants.slice(from, from + page.limit);
    },
  };
  const redis = {
    pipeline: () => {
      let n = 0;
      const pipeline = {
        exists: () => {
          n += 1;
          return pipeline;
        },
        exec: async () => Array.from({ length: n }, () => [null, 0]),
      };
      return pipeline;
    },
  };
  const queue = { toKey: (id: string) => `bull:refresh:${id}` };
  const scheduler = {
    schedule: async (due: readonly SchedulableGrant[]) => {
      events.push(`schedule ${due.length}`);
      return due.length;
    },
  };
  const reconciler = new Reconciler(
    store as never,
    queue as never,
    redis as never,
    scheduler as never,
    createLogger({ level: 'silent' }),
    { intervalMs, horizonMs: 3_600_000, overdueGraceMs: 60_000, now: () => NOW },
  );
  return { reconciler, events };
}

describe('Reconciler', () => {
  it("queues each page's missing jobs before it reads the next page", async () => {
    const { reconciler, events } = reconcilerOver(2_500);
    expect(await reconciler.reconcileOnce()).toEqual({ checked: 2_500, added: 2_500, revived: 0 });
    expect(events).toEqual([
      'list 0',
      'schedule 1000',
      'list 1000',
      'schedule 1000',
      'list 2000',
      'schedule 500',
    ]);
  });

  it('runs its timed passes from one interval after start: the first pass is the caller’s', async () => {
    const { reconciler, events } = reconcilerOver(10, 150);
    const startedAt = performance.now();
    reconciler.start();
    const deadline = startedAt + 5_000;
    while (events.length === 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const firstPassAfter = performance.now() - startedAt;
    await reconciler.stop();
    // A timer never fires early, so however slow the machine, the first pass waited the interval.
    expect(firstPassAfter).toBeGreaterThanOrEqual(149);
    expect(events).toEqual(['list 0', 'schedule 10']);
  });
});
