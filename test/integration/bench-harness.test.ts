import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runBench, SCENARIOS } from '../../bench/run.js';
import { postgresUnavailable } from '../support/private-postgres.js';

// The bench must keep working as the engine changes; this runs every scenario end to end at a tiny
// size. It asserts that the harness works and reports, never how fast anything is.
describe('bench harness', () => {
  const out = mkdtempSync(join(tmpdir(), 'gk-bench-test-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs every scenario at small N and writes JSON and Markdown results', {
    timeout: 180_000,
  }, async () => {
    // At 16 in flight, not the service's 256: at 256, two bench workers on PostgreSQL sometimes stop
    // settling (no stalled job, no error logged; seen in about half the runs under vitest, none
    // from the command line). The watchdog then fails the run within a minute instead of hanging;
    // the cause is open under issue 12. This test checks the harness, not the engine at 256.
    const result = await runBench({ grants: 120, quick: true, out, progress: false, concurrency: 16 });

    expect(result.scenarios.map((s) => s.id)).toEqual([...SCENARIOS]);
    for (const scenario of result.scenarios) {
      expect(scenario.figures.length).toBeGreaterThan(0);
      for (const f of scenario.figures) {
        // The PostgreSQL figures are skipped, with a note saying why, on a machine without it.
        if (f.value === null && postgresUnavailable()) {
          expect(f.name, `${scenario.id}: ${f.name}`).toMatch(/PostgreSQL/);
          expect(f.note, `${scenario.id}: ${f.name}`).toMatch(/skipped/);
          continue;
        }
        // Every figure has a reference and a grantkeeper value, both measured in the same run.
        expect(f.reference?.value, `${scenario.id}: ${f.name}`).toBeGreaterThan(0);
        expect(f.value, `${scenario.id}: ${f.name}`).not.toBeNull();
        expect(Number.isFinite(f.value), `${scenario.id}: ${f.name}`).toBe(true);
      }
    }
    // The token reads run against the real API: numbers for every figure, and a ratio.
    const reads = result.scenarios.find((s) => s.id === 'token-reads');
    expect(reads?.figures.map((f) => f.name)).toEqual([
      'GET token reads/s',
      'p50 latency',
      'p99 latency',
      'token reads/s on PostgreSQL',
    ]);
    for (const f of reads?.figures ?? []) {
      if (f.value === null && postgresUnavailable()) continue;
      expect(f.value, f.name).toBeGreaterThan(0);
      expect(f.ratio, f.name).toBeGreaterThan(0);
    }
    const refreshed = result.scenarios.filter((s) =>
      ['throughput', 'catch-up', 'lateness', '429-storm', 'rate-limit'].includes(s.id),
    );
    for (const s of refreshed) expect(s.details.failedOutcomes ?? {}).toEqual({});
    const throughput = result.scenarios.find((s) => s.id === 'throughput');
    expect(throughput?.figures.map((f) => f.name)).toEqual([
      'refreshes/s vs limit',
      'refreshes/s vs floor',
      'refreshes/s at 150 ms latency',
      'PostgreSQL refreshes/s vs SQLite',
      '2 workers on PostgreSQL vs 1',
    ]);
    const catchUp = result.scenarios.find((s) => s.id === 'catch-up');
    expect(catchUp?.figures.map((f) => f.name)).toEqual([
      'seconds to refresh 120 overdue',
      'peak worker RSS',
      'seconds to refresh 120 overdue at 150 ms',
      'peak worker RSS at 150 ms',
    ]);
    // Whether the pacing targets hold is the bench's to say; that a storm loses no grant is not.
    const storm = result.scenarios.find((s) => s.id === '429-storm');
    expect(storm?.figures.map((f) => f.name)).toEqual([
      'requests during a 2 s storm',
      'seconds from storm end to last refresh',
      'grants live with a new token after it',
    ]);
    expect(storm?.figures[2]?.value).toBe(120);
    const rate = result.scenarios.find((s) => s.id === 'rate-limit');
    expect(rate?.figures.map((f) => f.name)).toEqual(['busiest second across 2 workers']);
    expect(rate?.details.live).toEqual({ limited: 80, unlimited: 80 });
    expect(result.environment.redis).toMatch(/^\d+\.\d+/);

    const json = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8'));
    expect(json.scenarios).toHaveLength(SCENARIOS.length);
    const markdown = readFileSync(join(out, 'latest.md'), 'utf8');
    expect(markdown).toContain('| Scenario | Figure | grantkeeper | Reference | Ratio | Target | Holds |');
    expect(markdown).toContain('6 Token-endpoint client');
  });
});
