import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import type { Redis } from 'ioredis';
import { packageRoot } from '../../src/util/package-root.js';

export interface Percentiles {
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles; sorts a copy. */
export function percentiles(values: readonly number[]): Percentiles {
  if (values.length === 0) return { p50: Number.NaN, p99: Number.NaN, max: Number.NaN };
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] as number };
}

export function ratePerSecond(count: number, fromMs: number, toMs: number): number {
  return count / (Math.max(1, toMs - fromMs) / 1000);
}

/** One field of a Redis INFO section as a number (or string when not numeric). */
export async function redisInfo(redis: Redis, section: string): Promise<Record<string, string>> {
  const text = await redis.info(section);
  const fields: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && !line.startsWith('#')) fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
}

export async function usedMemory(redis: Redis): Promise<number> {
  return Number((await redisInfo(redis, 'memory')).used_memory);
}

export interface CommandStat {
  command: string;
  calls: number;
  usec: number;
}

/** INFO commandstats, heaviest first; reset with CONFIG RESETSTAT before the workload. */
export async function commandStats(redis: Redis, top = 8): Promise<CommandStat[]> {
  const fields = await redisInfo(redis, 'commandstats');
  return Object.entries(fields)
    .map(([key, value]) => {
      const stat = Object.fromEntries(value.split(',').map((kv) => kv.split('=')));
      return { command: key.replace(/^cmdstat_/, ''), calls: Number(stat.calls), usec: Number(stat.usec) };
    })
    .sort((a, b) => b.usec - a.usec)
    .slice(0, top);
}

export interface Environment {
  date: string;
  node: string;
  platform: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  redis: string;
  bullmq: string;
  undici: string;
  /** The private PostgreSQL cluster's server version, when the run had one. */
  postgres?: string;
}

function packageVersion(name: string): string {
  const path = join(packageRoot(), 'node_modules', name, 'package.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}

export async function describeEnvironment(redis: Redis): Promise<Environment> {
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    redis: (await redisInfo(redis, 'server')).redis_version ?? 'unknown',
    bullmq: packageVersion('bullmq'),
    undici: packageVersion('undici'),
  };
}

export interface ProfileEntry {
  name: string;
  selfPercent: number;
}

export interface ProfileSummary {
  /** Share of samples by where the code lives: a package, our folders, GC, native, idle. */
  byOrigin: ProfileEntry[];
  /** Heaviest functions by self time. */
  byFunction: ProfileEntry[];
}

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Where a function lives: node_modules/<pkg>, our top-level folder, or a V8 pseudo-frame. */
function origin(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const path = url.replace(/^file:\/\//, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (pkg) return pkg[1] as string;
  const rel = relative(packageRoot(), path);
  return rel.startsWith('..') ? path : (rel.split('/').slice(0, 2).join('/') as string);
}

/**
 * Reads the main-thread .cpuprofile node wrote into `dir` (--cpu-prof-dir) and sums self time.
 * Files are named CPU.<date>.<time>.<pid>.<thread>.<seq>: thread 0 is the main thread; the others
 * (tsx's loader thread) idle all along and would drown the figures.
 */
export function summarizeCpuProfiles(dir: string, top = 12): ProfileSummary | undefined {
  const files = readdirSync(dir).filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f));
  if (files.length === 0) return undefined;
  const byOrigin = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: CpuProfileNode[] };
    for (const node of profile.nodes) {
      const hits = node.hitCount ?? 0;
      if (hits === 0) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      const where = origin(url, functionName);
      const name = `${functionName || '(anonymous)'} ${where}${url ? `:${lineNumber + 1}` : ''}`;
      byOrigin.set(where, (byOrigin.get(where) ?? 0) + hits);
      byFunction.set(name, (byFunction.get(name) ?? 0) + hits);
      total += hits;
    }
  }
  const rank = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, hits]) => ({ name, selfPercent: Math.round((1000 * hits) / total) / 10 }));
  return { byOrigin: rank(byOrigin), byFunction: rank(byFunction) };
}
