import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import { type ManagedRedis, PortTakenError, startManagedRedis } from './managed-redis.js';
import { type ClaimRecord, claimManagedRedis } from './managed-redis-claim.js';
import { ensureManagedRedisPassword, prepareManagedRedisFolder } from './managed-redis-endpoint.js';
import { canInspectProcesses, isProcessAlive, redisServersIn, terminateProcess } from './process-info.js';

export interface OwnedRedis {
  /** With the password: never log it (describeRedisUrl). */
  url: string;
  /**
   * Settles, with the reason, when the redis-server is gone for good: it died more often than the
   * restart limit allows, or could not be started again. Never rejects.
   */
  failed: Promise<GrantkeeperError>;
  /** Stops the redis-server (it flushes its AOF) and marks the claim stopped. */
  stop(): Promise<void>;
}

/**
 * A crash loop (a full disk, a corrupt AOF) is not hidden: the fourth exit or failed start within a
 * minute ends the service.
 */
const RESTART_LIMIT = { restarts: 3, windowMs: 60_000 };
/** Between failed starts, so a port still closing or a brief hiccup can pass. */
const RESTART_RETRY_MS = 1000;
/** An orphan flushing a large AOF gets this long to exit on SIGTERM. */
const ORPHAN_STOP_GRACE_MS = 10_000;

/**
 * Starts and keeps the data folder's own redis-server for `grantkeeper run`: claims the folder
 * (refusing while another run owns it), stops a redis-server an owner killed -9 left behind on the
 * same AOF, starts a password-protected one (on the previous owner's port when it is free, so
 * clients still connected reconnect by themselves) and restarts it when it dies.
 */
export async function startOwnedRedis(opts: { dataDir: string; logger: Logger }): Promise<OwnedRedis> {
  const { logger } = opts;
  const folder = prepareManagedRedisFolder(opts.dataDir);
  const claim = claimManagedRedis(folder);
  let server: ManagedRedis;
  let password: string;
  try {
    await stopOrphans(folder, claim.previous, logger);
    password = ensureManagedRedisPassword(folder);
    server = await startPreferringPort(folder, password, claim.previous?.port ?? null, logger);
    claim.update({ redisPid: server.pid, port: server.port });
  } catch (err) {
    claim.release();
    throw err;
  }
  logger.info(
    { redisPid: server.pid, port: server.port },
    'started a managed redis-server (no REDIS_URL set); only this user can reach it',
  );

  const limit = RESTART_LIMIT;
  const deaths: number[] = [];
  let stopping = false;
  let restarting: Promise<void> | undefined;
  let fail!: (err: GrantkeeperError) => void;
  const failed = new Promise<GrantkeeperError>((resolve) => {
    fail = resolve;
  });
  /** Counts an exit or a failed start; false once the limit is spent. */
  const mayRestart = () => {
    const now = Date.now();
    deaths.push(now);
    while ((deaths[0] ?? now) <= now - limit.windowMs) deaths.shift();
    return deaths.length <= limit.restarts;
  };

  const restart = async (port: number, why: string) => {
    let last = why;
    while (!stopping) {
      if (!mayRestart()) {
        fail(
          new GrantkeeperError(
            'redis_unavailable',
            `the managed redis-server could not be kept running: ${deaths.length} exits or failed starts ` +
              `within ${limit.windowMs / 1000} s (last: ${last}); its own log lines show with GRANTKEEPER_LOG_LEVEL=debug`,
          ),
        );
        return;
      }
      try {
        const next = await startManagedRedis({ dataDir: folder, port, password, logger });
        if (stopping) return await next.stop();
        server = next;
        claim.update({ redisPid: next.pid });
        logger.info({ redisPid: next.pid, port }, 'restarted the managed redis-server');
        supervise(next);
        return;
      } catch (err) {
        last = (err as Error).message;
        logger.error(
          { port, err: { message: last } },
          'could not restart the managed redis-server; trying again',
        );
        await new Promise((resolve) => setTimeout(resolve, RESTART_RETRY_MS));
      }
    }
  };
  const supervise = (current: ManagedRedis) => {
    void current.exited.then((exitCode) => {
      if (stopping) return;
      logger.error(
        { redisPid: current.pid, exitCode },
        'the managed redis-server exited unexpectedly; restarting it on the same port',
      );
      restarting = restart(current.port, `exit code ${exitCode ?? 'none, killed by a signal'}`);
    });
  };
  supervise(server);

  return {
    url: server.url,
    failed,
    async stop() {
      stopping = true;
      await restarting;
      await server.stop();
      claim.release();
    },
  };
}

async function startPreferringPort(
  folder: string,
  password: string,
  port: number | null,
  logger: Logger,
): Promise<ManagedRedis> {
  if (port !== null) {
    try {
      return await startManagedRedis({ dataDir: folder, port, password, logger });
    } catch (err) {
      if (!(err instanceof PortTakenError)) throw err;
      logger.info({ port }, 'the previous managed Redis port is taken; picking another');
    }
  }
  return startManagedRedis({ dataDir: folder, password, logger });
}

/**
 * A redis-server still working on this folder belongs to an owner that is gone (it was killed -9,
 * or died before recording its redis-server): two servers must never share one AOF. Each is checked
 * in /proc to really be a redis-server in this folder before it is sent SIGTERM, since pids are
 * reused; without /proc nothing is signalled and the operator is asked to look.
 */
async function stopOrphans(folder: string, previous: ClaimRecord | undefined, logger: Logger): Promise<void> {
  if (!canInspectProcesses()) {
    if (previous?.redisPid && isProcessAlive(previous.redisPid)) {
      throw new GrantkeeperError(
        'redis_unavailable',
        `process ${previous.redisPid} may be the redis-server a previous grantkeeper (pid ${previous.ownerPid}) ` +
          `left running on ${folder}: stop it if it is, then start again`,
      );
    }
    return;
  }
  // Finds the previous owner's redis-server by its working folder, and one it started but died
  // before recording, or one an older grantkeeper started.
  for (const pid of redisServersIn(folder)) {
    logger.warn(
      { redisPid: pid, previousOwnerPid: previous?.ownerPid ?? null },
      'stopping the redis-server a previous grantkeeper left running on this data folder',
    );
    if (!(await terminateProcess(pid, ORPHAN_STOP_GRACE_MS))) {
      throw new GrantkeeperError(
        'redis_unavailable',
        `the orphaned redis-server ${pid} on ${folder} does not stop: kill it, then start again`,
      );
    }
  }
}
