import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { findFreePort } from '../../src/redis/managed-redis.js';
import { waitFor } from './engine.js';

export interface PrivateSentinelGroup {
  /** The master's name the sentinels monitor. */
  name: string;
  sentinels: Array<{ host: string; port: number }>;
  /** GRANTKEEPER_REDIS_SENTINELS as an operator writes it. */
  sentinelList: string;
  /** The port of the current master, as the sentinels say. */
  masterPort(): Promise<number>;
  /** kill -9 of the current master; resolves once the sentinels have promoted the replica. */
  failOver(): Promise<{ from: number; to: number; ms: number }>;
  stop(): Promise<void>;
}

const NAME = 'gkmaster';

/**
 * A Sentinel group of the test's own on free loopback ports: a master, one replica and three
 * sentinels (quorum 2), each a redis-server child of this process. Never the system Redis.
 */
export async function startPrivateSentinelGroup(): Promise<PrivateSentinelGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'grantkeeper-sentinel-'));
  const children: ChildProcess[] = [];
  const start = (file: string, lines: string[], sentinel = false) => {
    writeFileSync(join(dir, file), `${lines.join('\n')}\n`);
    const child = spawn('redis-server', [join(dir, file), ...(sentinel ? ['--sentinel'] : [])], {
      stdio: 'ignore',
    });
    children.push(child);
    return child;
  };
  const common = (port: number) => [
    `port ${port}`,
    'bind 127.0.0.1',
    `dir ${dir}`,
    'save ""',
    'appendonly no',
  ];
  const masterPort = await findFreePort();
  const master = start('master.conf', [...common(masterPort), 'maxmemory-policy noeviction']);
  const replicaPort = await findFreePort();
  start('replica.conf', [
    ...common(replicaPort),
    'maxmemory-policy noeviction',
    `replicaof 127.0.0.1 ${masterPort}`,
  ]);
  const sentinels: Array<{ host: string; port: number }> = [];
  for (let i = 0; i < 3; i++) {
    const port = await findFreePort();
    start(
      `sentinel-${i}.conf`,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${NAME} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${NAME} 1000`,
        `sentinel failover-timeout ${NAME} 5000`,
        `sentinel parallel-syncs ${NAME} 1`,
      ],
      true,
    );
    sentinels.push({ host: '127.0.0.1', port });
  }
  const ask = async <T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> => {
    const r = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on('error', () => {});
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  };
  const currentMaster = async () => {
    const addr = (await ask(sentinels[0]?.port ?? 0, (r) =>
      r.call('SENTINEL', 'get-master-addr-by-name', NAME),
    )) as [string, string] | null;
    return Number(addr?.[1] ?? 0);
  };
  const masters = new Map<number, ChildProcess>([[masterPort, master]]);
  masters.set(replicaPort, children[1] as ChildProcess);
  // Ready: the replica is in sync and every sentinel has found the others.
  await waitFor(
    async () =>
      (await ask(replicaPort, (r) => r.info('replication')).catch(() => '')).includes(
        'master_link_status:up',
      ) &&
      (
        await Promise.all(
          sentinels.map((s) =>
            ask(s.port, (r) => r.call('SENTINEL', 'master', NAME) as Promise<string[]>).catch(
              (): string[] => [],
            ),
          ),
        )
      ).every((info) => Number(info[info.indexOf('num-other-sentinels') + 1]) >= 2),
    'the Sentinel group ready',
    20_000,
    100,
  );
  return {
    name: NAME,
    sentinels,
    sentinelList: sentinels.map((s) => `${s.host}:${s.port}`).join(','),
    masterPort: currentMaster,
    async failOver() {
      const from = await currentMaster();
      const began = Date.now();
      masters.get(from)?.kill('SIGKILL');
      let to = from;
      await waitFor(
        async () => {
          to = await currentMaster().catch(() => from);
          return to !== from;
        },
        'the sentinels to promote the replica',
        20_000,
        100,
      );
      return { from, to, ms: Date.now() - began };
    },
    async stop() {
      for (const child of children) child.kill('SIGKILL');
      await Promise.all(
        children.map((c) =>
          c.exitCode !== null || c.signalCode ? undefined : new Promise((r) => c.once('exit', r)),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
