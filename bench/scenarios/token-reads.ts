import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { percentiles } from '../support/metrics.js';
import { forkBenchChild } from '../support/processes.js';
import { figure, type ScenarioResult } from '../support/report.js';
import type { BenchContext } from '../support/workload.js';

export const READS_TARGET_PER_SECOND = 10_000;
export const READS_TARGET_P99_MS = 2;
export const READS_TARGET_SHARE = 0.5;
const READ_CONCURRENCY = 16;

export interface HttpReadStats {
  ratePerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/** GETs `url` from `concurrency` lanes over keep-alive connections for `durationMs`, after a warm-up. */
export async function measureHttpReads(
  url: string,
  opts: { concurrency: number; durationMs: number; headers?: Record<string, string> },
): Promise<HttpReadStats> {
  const target = new URL(url);
  const pool = new Pool(target.origin, { connections: opts.concurrency });
  const path = `${target.pathname}${target.search}`;
  const run = async (durationMs: number, latencies: number[] | undefined) => {
    let errors = 0;
    const deadline = performance.now() + durationMs;
    const lane = async () => {
      while (performance.now() < deadline) {
        const started = performance.now();
        const res = await pool.request({
          path,
          method: 'GET',
          ...(opts.headers ? { headers: opts.headers } : {}),
        });
        await res.body.arrayBuffer();
        if (res.statusCode !== 200) errors += 1;
        latencies?.push(performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, lane));
    return errors;
  };
  try {
    await run(Math.min(1000, opts.durationMs / 2), undefined);
    const latencies: number[] = [];
    const started = performance.now();
    const errors = await run(opts.durationMs, latencies);
    const elapsed = performance.now() - started;
    const p = percentiles(latencies);
    return {
      ratePerSecond: latencies.length / (elapsed / 1000),
      p50Ms: p.p50,
      p99Ms: p.p99,
      requests: latencies.length,
      errors,
    };
  } finally {
    await pool.close();
  }
}

/**
 * Scenario 5: GET /v1/grants/:id/token at fixed concurrency. The reference is a bare fastify route
 * returning a constant, in its own process on loopback. The grantkeeper side needs the HTTP API
 * (src/api), which does not exist yet: its figures stay pending until it does.
 */
export async function tokenReads(ctx: BenchContext, durationMs: number): Promise<ScenarioResult> {
  const server = forkBenchChild(new URL('../support/constant-route-server.ts', import.meta.url));
  try {
    const { port } = await server.next<{ type: 'ready'; port: number }>('ready', 30_000);
    ctx.progress.line(`  5 bare fastify route: ${durationMs / 1000} s at concurrency ${READ_CONCURRENCY}`);
    const ref = await measureHttpReads(`http://127.0.0.1:${port}/v1/grants/g_bench/token`, {
      concurrency: READ_CONCURRENCY,
      durationMs,
    });
    const pending =
      'waits for the HTTP API (src/api has no exported start function yet); the reference and the load generator are ready.';
    return {
      id: 'token-reads',
      title: '5 Token reads',
      figures: [
        figure({
          name: 'GET token reads/s',
          value: null,
          unit: '/s',
          better: 'higher',
          reference: { name: 'bare fastify route', value: ref.ratePerSecond },
          target: {
            text: `≥ ${READS_TARGET_PER_SECOND.toLocaleString('en-US')}/s and ≥ ${READS_TARGET_SHARE * 100} % of reference`,
            holds: false,
          },
          note: pending,
        }),
        figure({
          name: 'p50 latency',
          value: null,
          unit: 'ms',
          better: 'lower',
          reference: { name: 'bare fastify route', value: ref.p50Ms },
        }),
        figure({
          name: 'p99 latency',
          value: null,
          unit: 'ms',
          better: 'lower',
          reference: { name: 'bare fastify route', value: ref.p99Ms },
          target: { text: `≤ ${READS_TARGET_P99_MS} ms`, holds: false },
        }),
      ],
      details: { concurrency: READ_CONCURRENCY, durationMs, reference: ref },
    };
  } finally {
    await server.stop();
  }
}
