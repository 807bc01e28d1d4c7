/**
 * `npm run bench`: how fast and how lean grantkeeper is, next to the physical limit and to the
 * libraries people use instead, all measured in one run on one machine. Starts a private
 * redis-server, a private durable PostgreSQL cluster (when the machine has the server binaries;
 * otherwise the PostgreSQL figures say why they are missing) and a token endpoint child, seeds
 * synthetic grants into fresh dbs, runs the scenarios, prints a Markdown table and writes
 * bench/results/latest.{json,md}.
 *   npm run bench -- [--grants 100000] [--scenarios throughput,catch-up,...] [--quick] [--out dir]
 *                    [--concurrency 256] [--latency 0] [--profile] [--tsx]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { DEFAULT_CONCURRENCY } from '../src/config/config-schema.js';
import { startManagedRedis } from '../src/redis/managed-redis.js';
import { postgresUnavailable, startPrivatePostgres } from '../test/support/private-postgres.js';
import { catchUp } from './scenarios/catch-up.js';
import { lateness } from './scenarios/lateness.js';
import { rateLimit, storm } from './scenarios/pacing.js';
import { redisMemory } from './scenarios/redis-memory.js';
import { REALISTIC_LATENCY_MS, throughput } from './scenarios/throughput.js';
import { tokenClient } from './scenarios/token-client.js';
import { tokenReads } from './scenarios/token-reads.js';
import { compileBenchChildren } from './support/compiled.js';
import { describeEnvironment } from './support/metrics.js';
import { forkBenchChild } from './support/processes.js';
import { Progress } from './support/progress.js';
import { type BenchResult, type ScenarioResult, toMarkdown } from './support/report.js';
import type { BenchContext } from './support/workload.js';

export const SCENARIOS = [
  'throughput',
  'catch-up',
  'lateness',
  'redis-memory',
  'token-reads',
  'token-client',
  '429-storm',
  'rate-limit',
] as const;
export type ScenarioId = (typeof SCENARIOS)[number];

export interface BenchOptions {
  /** Grants in Redis for the memory scenario; caps the other scenarios' sizes too. Default 100,000. */
  grants?: number;
  scenarios?: readonly ScenarioId[];
  /** Short windows and durations, for the harness test and a quick look. */
  quick?: boolean;
  /** Where latest.json and latest.md go. Default bench/results. */
  out?: string;
  /** Worker concurrency for every refresh workload and its references. Default: the service's. */
  concurrency?: number;
  /** Token endpoint latency in ms. Default 0: what is measured is our overhead, not the provider's. */
  latencyMs?: number;
  profile?: boolean;
  /** Run the measured children under tsx instead of compiled to JavaScript (as production runs). */
  tsx?: boolean;
  progress?: boolean;
}

const DEFAULT_OUT = fileURLToPath(new URL('./results/', import.meta.url));

export async function runBench(options: BenchOptions = {}): Promise<BenchResult> {
  const grants = options.grants ?? 100_000;
  const quick = options.quick ?? false;
  const scenarios = options.scenarios ?? SCENARIOS;
  const progress = new Progress(options.progress ?? true);
  const began = Date.now();
  const tempDir = mkdtempSync(join(tmpdir(), 'gk-bench-'));
  // Even on Ctrl-C: 'exit' runs synchronous cleanup only, which rmSync is.
  const removeTemp = () => rmSync(tempDir, { recursive: true, force: true });
  process.on('exit', removeTemp);
  const cleanups: Array<() => Promise<void> | void> = [];
  try {
    const redisServer = await startManagedRedis();
    cleanups.push(() => redisServer.stop());
    const redis = new Redis(redisServer.url);
    cleanups.push(() => void redis.disconnect());
    const endpoint = forkBenchChild(new URL('./token-endpoint-server.ts', import.meta.url), {
      args: ['--latency', String(options.latencyMs ?? 0)],
    });
    cleanups.push(() => endpoint.stop());
    const { port } = await endpoint.next<{ type: 'ready'; port: number }>('ready', 30_000);
    // A second endpoint answering as real providers do, for the throughput figures at realistic latency.
    const realistic = forkBenchChild(new URL('./token-endpoint-server.ts', import.meta.url), {
      args: ['--latency', String(REALISTIC_LATENCY_MS)],
    });
    cleanups.push(() => realistic.stop());
    const realisticPort = (await realistic.next<{ type: 'ready'; port: number }>('ready', 30_000)).port;

    // Only the scenarios that measure PostgreSQL pay for a cluster.
    const wantsPostgres = scenarios.some((s) => s === 'throughput' || s === 'token-reads');
    const postgresSkipped = wantsPostgres ? postgresUnavailable() : 'not needed by these scenarios';
    const postgres = postgresSkipped ? undefined : await startPrivatePostgres({ durable: true });
    if (postgres) cleanups.push(() => postgres.stop());
    else if (wantsPostgres) progress.line(`PostgreSQL figures skipped: ${postgresSkipped}`);
    // On Ctrl-C, private-postgres's own 'exit' hook still halts the server.

    const compiledDir = options.tsx ? undefined : compileBenchChildren();
    if (compiledDir) cleanups.push(() => rmSync(compiledDir, { recursive: true, force: true }));
    const ctx: BenchContext = {
      redisUrl: redisServer.url,
      redis,
      tokenEndpoint: `http://127.0.0.1:${port}/token`,
      realisticTokenEndpoint: `http://127.0.0.1:${realisticPort}/token`,
      concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
      quick,
      tempDir,
      profile: options.profile ?? false,
      ...(compiledDir ? { compiledDir } : {}),
      progress,
      ...(postgres ? { postgres: { createDatabase: () => postgres.createDatabase() } } : {}),
      ...(postgresSkipped ? { postgresSkipped } : {}),
    };
    const run: Record<ScenarioId, () => Promise<ScenarioResult>> = {
      throughput: () => throughput(ctx, Math.min(grants, 20_000)),
      'catch-up': () => catchUp(ctx, Math.min(grants, 100_000)),
      lateness: () => lateness(ctx, Math.min(grants, 10_000)),
      'redis-memory': () => redisMemory(ctx, grants),
      'token-reads': () => tokenReads(ctx, quick ? 500 : 5_000),
      'token-client': () => tokenClient(ctx, Math.min(grants, quick ? 50 : 1_000)),
      '429-storm': () => storm(ctx, Math.min(grants, 10_000)),
      // Enough grants for 30 s at the limit; quick: under two seconds of it.
      'rate-limit': () => rateLimit(ctx, Math.min(grants, quick ? 80 : 1_500)),
    };
    const results: ScenarioResult[] = [];
    for (const id of SCENARIOS.filter((s) => scenarios.includes(s))) {
      progress.line(`${id}:`);
      results.push(await run[id]());
    }
    const result: BenchResult = {
      environment: {
        ...(await describeEnvironment(redis)),
        ...(postgres ? { postgres: await postgresVersion(postgres) } : {}),
      },
      options: {
        grants,
        quick,
        concurrency: ctx.concurrency,
        latencyMs: options.latencyMs ?? 0,
        children: options.tsx ? 'tsx' : 'compiled',
        scenarios: [...scenarios],
      },
      scenarios: results,
      durationSeconds: (Date.now() - began) / 1000,
    };
    const out = resolve(options.out ?? DEFAULT_OUT);
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(join(out, 'latest.md'), toMarkdown(result));
    return result;
  } finally {
    for (const fn of cleanups.reverse()) await fn();
    removeTemp();
    process.off('exit', removeTemp);
  }
}

async function postgresVersion(cluster: { query(sql: string): Promise<{ rows: unknown[] }> }) {
  const { rows } = await cluster.query(`select current_setting('server_version') as v`);
  return String((rows[0] as { v?: string } | undefined)?.v ?? 'unknown');
}

function parseCli(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      grants: { type: 'string' },
      scenarios: { type: 'string' },
      quick: { type: 'boolean' },
      out: { type: 'string' },
      concurrency: { type: 'string' },
      latency: { type: 'string' },
      profile: { type: 'boolean' },
      tsx: { type: 'boolean' },
    },
  });
  const whole = (name: string, text: string | undefined, min: number): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
    return n;
  };
  const scenarios = values.scenarios?.split(',').map((s) => s.trim());
  const unknown = scenarios?.filter((s) => !(SCENARIOS as readonly string[]).includes(s));
  if (unknown?.length)
    throw new Error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.join(', ')}`);
  const grants = whole('grants', values.grants, 1);
  const concurrency = whole('concurrency', values.concurrency, 1);
  const latencyMs = whole('latency', values.latency, 0);
  return {
    ...(grants === undefined ? {} : { grants }),
    ...(scenarios ? { scenarios: scenarios as ScenarioId[] } : {}),
    ...(values.quick ? { quick: true } : {}),
    ...(values.out ? { out: values.out } : {}),
    ...(concurrency === undefined ? {} : { concurrency }),
    ...(latencyMs === undefined ? {} : { latencyMs }),
    ...(values.profile ? { profile: true } : {}),
    ...(values.tsx ? { tsx: true } : {}),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // Ctrl-C still runs the 'exit' hooks that stop every child and remove the temp folder.
  process.on('SIGINT', () => process.exit(130));
  try {
    const result = await runBench(parseCli(process.argv.slice(2)));
    process.stdout.write(`\n${toMarkdown(result)}`);
    process.exit(0);
  } catch (err) {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  }
}
