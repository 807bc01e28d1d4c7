import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { findFreePort } from '../../src/redis/managed-redis.js';
import { waitFor } from './engine.js';

export interface PrivateRedisCluster {
  nodes: Array<{ host: string; port: number }>;
  /** GRANTKEEPER_REDIS_CLUSTER_NODES as an operator writes it: one node, the rest discovered. */
  seedNode: string;
  /** Every key on every master, for leak checks and to see where the queue keys went. */
  keys(): Promise<Array<{ port: number; key: string }>>;
  stop(): Promise<void>;
}

/** A Redis Cluster of the test's own: three masters on free loopback ports, no replicas. */
export async function startPrivateRedisCluster(): Promise<PrivateRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'grantkeeper-cluster-'));
  const children: ChildProcess[] = [];
  const nodes: Array<{ host: string; port: number }> = [];
  for (let i = 0; i < 3; i++) {
    const port = await findFreePort();
    const file = join(dir, `node-${port}.conf`);
    writeFileSync(
      file,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        'cluster-enabled yes',
        `cluster-config-file nodes-${port}.conf`,
        'cluster-node-timeout 5000',
        'save ""',
        'appendonly no',
        'maxmemory-policy noeviction',
      ].join('\n'),
    );
    children.push(spawn('redis-server', [file], { stdio: 'ignore' }));
    nodes.push({ host: '127.0.0.1', port });
  }
  const client = (port: number) => {
    const r = new Redis({
      host: '127.0.0.1',
      port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on('error', () => {});
    return r;
  };
  const ask = async <T>(port: number, fn: (r: Redis) => Promise<T>) => {
    const r = client(port);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  };
  await waitFor(
    async () =>
      (await Promise.all(nodes.map((n) => ask(n.port, (r) => r.ping()).catch(() => '')))).every(
        (p) => p === 'PONG',
      ),
    'cluster nodes up',
    10_000,
    50,
  );
  execFileSync(
    'redis-cli',
    [
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ],
    { stdio: 'pipe', timeout: 30_000 },
  );
  await waitFor(
    async () =>
      (await Promise.all(nodes.map((n) => ask(n.port, (r) => r.cluster('INFO')).catch(() => '')))).every(
        (info) => String(info).includes('cluster_state:ok'),
      ),
    'cluster state ok on every node',
    20_000,
    100,
  );
  return {
    nodes,
    seedNode: `127.0.0.1:${nodes[0]?.port}`,
    async keys() {
      const all: Array<{ port: number; key: string }> = [];
      for (const n of nodes) {
        for (const key of await ask(n.port, (r) => r.keys('*'))) all.push({ port: n.port, key });
      }
      return all;
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
