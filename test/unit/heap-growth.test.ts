import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const module = join(import.meta.dirname, '../../src/service/heap-growth.ts');

/**
 * A busy worker's heap in miniature: a window of live objects (work in flight) over a stream of
 * garbage. Prints the largest heap V8 committed along the way, in MiB.
 */
const workload = (bound: boolean) => `
  import { getHeapStatistics } from 'node:v8';
  import { boundHeapGrowth } from ${JSON.stringify(module)};
  if (${bound}) boundHeapGrowth();
  const inFlight = new Array(50_000);
  let peak = 0;
  for (let i = 0; i < 1_000_000; i++) {
    inFlight[i % inFlight.length] = { id: i, body: 'x'.repeat(200) + i, fields: new Array(20).fill(i) };
    if (i % 1000 === 0) peak = Math.max(peak, getHeapStatistics().total_heap_size);
  }
  console.log(Math.round(peak / 1048576));
`;

async function peakHeapMiB(bound: boolean): Promise<number> {
  const { stdout } = await run(process.execPath, [
    '--import',
    'tsx',
    '--input-type=module',
    '-e',
    workload(bound),
  ]);
  return Number(stdout.trim());
}

describe('boundHeapGrowth', () => {
  it('keeps the heap of a process that promotes its garbage well below what V8 lets it grow to', async () => {
    const [unbounded, bounded] = await Promise.all([peakHeapMiB(false), peakHeapMiB(true)]);
    // Same work, same live set: V8's own growth held about 180 MiB here, the bounded one about 95.
    expect(bounded).toBeLessThan(unbounded * 0.75);
  }, 60_000);
});
