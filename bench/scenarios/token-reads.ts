import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool, request } from 'undici';
import type { ApiServerReady, ApiServerRequest } from '../support/api-server-child.js';
import { benchChildUrl } from '../support/compiled.js';
import { type ProfileSummary, percentiles, summarizeCpuProfiles } from '../support/metrics.js';
import { forkBenchChild } from '../support/processes.js';
import { figure, type ScenarioResult } from '../support/report.js';
import { seedGrants } from '../support/seed.js';
import type { BenchContext } from '../support/workload.js';
import { percentileFigures, removeDir } from './shared.js';

export const READS_TARGET_PER_SECOND = 10_000;
export const READS_TARGET_P99_MS = 2;
export const READS_TARGET_SHARE = 0.5;
const READ_CONCURRENCY = 16;
/** Grants the reads are spread over, round robin. */
const READ_GRANTS = 100;
/** Every read asks for a token valid this long; the seeded ones live an hour, so none refreshes. */
const MIN_VALID_SEC = 60;

export interface HttpReadStats {
  ratePerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
}

/**
 * GETs `urls` (one origin; several are taken in turn) from `concurrency` lanes over keep-alive
 * connections for `durationMs`, after a warm-up.
 */
export async function measureHttpReads(
  urls: string | readonly string[],
  opts: { concurrency: number; durationMs: number; headers?: Record<string, string> },
): Promise<HttpReadStats> {
  const targets = (typeof urls === 'string' ? [urls] : urls).map((u) => new URL(u));
  const origin = targets[0]?.origin;
  if (!origin || targets.some((t) => t.origin !== origin)) throw new Error('measureHttpReads: one origin');
  const pool = new Pool(origin, { connections: opts.concurrency });
  const paths = targets.map((t) => `${t.pathname}${t.search}`);
  let next = 0;
  const run = async (durationMs: number, latencies: number[] | undefined) => {
    let errors = 0;
    const deadline = performance.now() + durationMs;
    const lane = async () => {
      while (performance.now() < deadline) {
        const path = paths[next] as string;
        next = (next + 1) % paths.length;
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
 * Scenario 5: GET /v1/grants/:id/token at fixed concurrency. The subject is grantkeeper's real API
 * (startGrantkeeper without workers, authentication, zod validation, the db read) on seeded grants
 * whose access tokens live an hour, so no read refreshes; the reference is a bare fastify route
 * returning a constant. Each server runs in its own process on loopback; both are read by the same
 * load generator at the same concurrency for the same time. Then the same API with its store on
 * PostgreSQL, against the SQLite figure, when the run has a PostgreSQL cluster.
 */
export async function tokenReads(ctx: BenchContext, durationMs: number): Promise<ScenarioResult> {
  const ref = await measureReference(ctx, durationMs);
  const { stats: gk, profile } = await measureGrantkeeper(ctx, durationMs);
  const share = gk.ratePerSecond / ref.ratePerSecond;
  const onPostgres = ctx.postgres
    ? (await measureGrantkeeper(ctx, durationMs, await ctx.postgres.createDatabase())).stats
    : undefined;
  return {
    id: 'token-reads',
    title: '5 Token reads',
    figures: [
      figure({
        name: 'GET token reads/s',
        value: gk.ratePerSecond,
        unit: '/s',
        better: 'higher',
        reference: { name: 'bare fastify route', value: ref.ratePerSecond },
        target: {
          text: `≥ ${READS_TARGET_PER_SECOND.toLocaleString('en-US')}/s and ≥ ${READS_TARGET_SHARE * 100} % of reference`,
          holds: gk.ratePerSecond >= READS_TARGET_PER_SECOND && share >= READS_TARGET_SHARE,
        },
        note:
          `the real API (startGrantkeeper, no workers) in its own process, reads spread round robin over ` +
          `${READ_GRANTS} seeded grants with min_valid=${MIN_VALID_SEC} and one API key; access tokens ` +
          'live an hour, so every read is served from the db without a refresh. Both servers answer the ' +
          'same load generator on loopback at the same concurrency.',
      }),
      ...percentileFigures(
        { p50: gk.p50Ms, p99: gk.p99Ms, max: Number.NaN },
        { p50: ref.p50Ms, p99: ref.p99Ms, max: Number.NaN },
        {
          what: 'latency',
          unit: 'ms',
          referenceName: 'bare fastify route',
          include: ['p50', 'p99'],
          targets: { p99: { text: `≤ ${READS_TARGET_P99_MS} ms`, holds: gk.p99Ms <= READS_TARGET_P99_MS } },
        },
      ),
      figure({
        name: 'token reads/s on PostgreSQL',
        value: onPostgres?.ratePerSecond ?? null,
        unit: '/s',
        better: 'higher',
        reference: { name: 'the same API on SQLite', value: gk.ratePerSecond },
        note: onPostgres
          ? `the same reads of the same API with its store on the run's private PostgreSQL cluster ` +
            `(p50 ${onPostgres.p50Ms.toFixed(2)} ms, p99 ${onPostgres.p99Ms.toFixed(2)} ms).`
          : `PostgreSQL figure skipped: ${ctx.postgresSkipped ?? 'no PostgreSQL cluster'}`,
      }),
    ],
    ...(profile ? { profile } : {}),
    details: {
      concurrency: READ_CONCURRENCY,
      durationMs,
      grants: READ_GRANTS,
      minValidSec: MIN_VALID_SEC,
      grantkeeper: gk,
      ...(onPostgres ? { grantkeeperOnPostgres: onPostgres } : {}),
      reference: ref,
    },
  };
}

async function measureReference(ctx: BenchContext, durationMs: number): Promise<HttpReadStats> {
  const server = forkBenchChild(benchChildUrl('constant-route-server', ctx.compiledDir));
  try {
    const { port } = await server.next<{ type: 'ready'; port: number }>('ready', 30_000);
    ctx.progress.line(`  5 bare fastify route: ${durationMs / 1000} s at concurrency ${READ_CONCURRENCY}`);
    return await measureHttpReads(
      `http://127.0.0.1:${port}/v1/grants/g_bench/token?min_valid=${MIN_VALID_SEC}`,
      { concurrency: READ_CONCURRENCY, durationMs },
    );
  } finally {
    await server.stop();
  }
}

/** The real API on a seeded SQLite db, or on a seeded PostgreSQL db when `databaseUrl` is given. */
async function measureGrantkeeper(
  ctx: BenchContext,
  durationMs: number,
  databaseUrl?: string,
): Promise<{ stats: HttpReadStats; profile?: ProfileSummary }> {
  await ctx.redis.flushall();
  const now = Date.now();
  // Refresh planned a minute before expiry: access tokens valid for the next hour.
  const db = await seedGrants({
    parentDir: ctx.tempDir,
    count: READ_GRANTS,
    tokenEndpoint: ctx.tokenEndpoint,
    plannedAt: () => now + 3_540_000,
    ...(databaseUrl ? { databaseUrl } : {}),
  });
  // The profile (when asked) is the SQLite run's.
  const profileDir = ctx.profile && !databaseUrl ? mkdtempSync(join(ctx.tempDir, 'profile-')) : undefined;
  const server = forkBenchChild(benchChildUrl('api-server-child', ctx.compiledDir), {
    ...(profileDir ? { execArgv: ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] } : {}),
  });
  try {
    const ready = server.next<ApiServerReady>('ready', 60_000);
    const request: ApiServerRequest = {
      dataDir: db.dataDir,
      ...(db.databaseUrl ? { databaseUrl: db.databaseUrl } : {}),
      key: db.key,
      redisUrl: ctx.redisUrl,
    };
    server.send({ type: 'start', ...request });
    const { url, apiKey, grantIds } = await ready;
    const headers = { authorization: `Bearer ${apiKey}` };
    const urls = grantIds.map((id) => `${url}/v1/grants/${id}/token?min_valid=${MIN_VALID_SEC}`);
    await checkRead(urls[0] as string, headers);
    ctx.progress.line(
      `  5 grantkeeper API${databaseUrl ? ' on PostgreSQL' : ''}: ${durationMs / 1000} s at concurrency ` +
        `${READ_CONCURRENCY} over ${grantIds.length} grants`,
    );
    const stats = await measureHttpReads(urls, { concurrency: READ_CONCURRENCY, durationMs, headers });
    if (stats.errors > 0) throw new Error(`token reads: ${stats.errors} of ${stats.requests} reads failed`);
    const stopped = server.next<{ type: 'stopped' }>('stopped', 30_000);
    server.send({ type: 'stop' });
    await stopped;
    await server.exited(10_000);
    const profile = profileDir ? summarizeCpuProfiles(profileDir) : undefined;
    return { stats, ...(profile ? { profile } : {}) };
  } finally {
    await server.stop();
    removeDir(db.dataDir);
    if (profileDir) removeDir(profileDir);
  }
}

/** One read before measuring: a 401 or a refresh would make every figure meaningless. */
async function checkRead(url: string, headers: Record<string, string>): Promise<void> {
  const res = await request(url, { headers });
  const body = (await res.body.json()) as { access_token?: string; refreshed?: boolean; error?: string };
  if (res.statusCode !== 200 || body.refreshed !== false || !body.access_token?.startsWith('at_')) {
    throw new Error(
      `token reads: first read answered ${res.statusCode} (error ${body.error}, refreshed ${body.refreshed})`,
    );
  }
}
