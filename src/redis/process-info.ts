import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

/**
 * What Linux's /proc says about other processes: enough to tell a live owner from a reused pid and
 * to make sure a pid really is a redis-server working in a given folder before it is signalled.
 * Elsewhere (no /proc) every answer is "unknown", and callers choose the safe side.
 */

/** How long a SIGKILLed process may take to be gone (an uninterruptible wait on I/O). */
const KILL_WAIT_MS = 5_000;

/** The fields of /proc/<pid>/stat after "pid (comm) ": comm may hold spaces and parentheses. */
function statFields(pid: number | 'self'): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The process's start time in clock ticks since boot: with the pid, an identity a reused pid cannot fake. */
export function processStartTicks(pid: number | 'self'): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** Alive and not a zombie. A process of another user (EPERM) is alive too. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // An orphan is reaped by whatever init the machine runs, maybe late: a zombie is gone for us.
  return statFields(pid)?.[0] !== 'Z';
}

/** True when /proc can answer the questions below on this machine. */
export function canInspectProcesses(): boolean {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

/**
 * A redis-server whose working folder is `folder`: redis chdirs into its `dir`, so this finds the
 * one serving an AOF folder whatever its pid, port or how it was started.
 */
export function isRedisServerIn(pid: number, folder: string): boolean {
  try {
    // redis-server rewrites its title to "redis-server 127.0.0.1:PORT"; argv[0] may be a full path.
    const first = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/)[0] ?? '';
    return basename(first) === 'redis-server' && readlinkSync(`/proc/${pid}/cwd`) === folder;
  } catch {
    return false;
  }
}

/** Every redis-server working in `folder` (an absolute, resolved path). */
export function redisServersIn(folder: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => pid !== process.pid && isRedisServerIn(pid, folder));
}

/**
 * SIGTERM (a redis-server then flushes its AOF), wait for it to go, SIGKILL after the grace period.
 * For processes that are not our children: their exit can only be polled. False: still there.
 */
export async function terminateProcess(pid: number, graceMs: number): Promise<boolean> {
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // Gone already.
    }
  };
  const gone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (isProcessAlive(pid)) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return true;
  };
  signal('SIGTERM');
  if (await gone(graceMs)) return true;
  signal('SIGKILL');
  return gone(KILL_WAIT_MS);
}
