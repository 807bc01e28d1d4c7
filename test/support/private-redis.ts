import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ManagedRedis, startManagedRedis } from '../../src/redis/managed-redis.js';

export interface PrivateRedis {
  url: string;
  port: number;
  /** Temp folder holding the AOF; removed by stop(). */
  dataDir: string;
  /** Stops redis and removes its temp folder. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would (the last second of AOF writes may be lost). */
  kill(): void;
  /** Starts redis again on the same port; keepData replays the AOF, otherwise the folder is wiped first. */
  restart(opts?: { keepData?: boolean }): Promise<void>;
}

/** A redis-server of the test's own on a free loopback port: never the system Redis. */
export async function startPrivateRedis(opts: { persistence?: boolean } = {}): Promise<PrivateRedis> {
  const dataDir = await mkdtemp(join(tmpdir(), 'grantkeeper-redis-'));
  const start = (port?: number) => startManagedRedis({ dataDir, persistence: opts.persistence, port });
  let current: ManagedRedis;
  try {
    current = await start();
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const { port, url } = current;

  const halt = async () => {
    await current.stop();
    // stop() returns at once for a killed child; wait for the reap so the port is free again.
    await current.exited;
  };

  return {
    url,
    port,
    dataDir,
    kill: () => current.kill(),
    async stop() {
      await halt();
      await rm(dataDir, { recursive: true, force: true });
    },
    async restart(restartOpts = {}) {
      await halt();
      if (!restartOpts.keepData) {
        await rm(dataDir, { recursive: true, force: true });
        await mkdir(dataDir, { recursive: true });
      }
      current = await start(port);
    },
  };
}
