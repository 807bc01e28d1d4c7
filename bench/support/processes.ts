import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../../src/util/package-root.js';
import { reapOnExit } from '../../src/util/reap-on-exit.js';

/** Every message a bench child sends: a `type` and whatever that type carries. */
export interface ChildMessage {
  type: string;
  [field: string]: unknown;
}

/** A bench child process with a small message protocol on its IPC channel. */
export interface BenchChild {
  process: ChildProcess;
  pid: number;
  send(message: ChildMessage): void;
  /** Resolves with the next message of `type`; rejects on an `error` message or an early exit. */
  next<T extends { type: string }>(type: string, timeoutMs?: number): Promise<T>;
  /** Calls `listener` for every message of `type` until stop(). */
  on(type: string, listener: (message: ChildMessage) => void): void;
  /** Resolves once the child has exited on its own, or after `timeoutMs` (false then). */
  exited(timeoutMs: number): Promise<boolean>;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the child is reaped. */
  stop(): Promise<void>;
}

/**
 * Forks a module, TypeScript under tsx or compiled JavaScript as is; resolved from this package's
 * root so any cwd works.
 */
export function forkBenchChild(
  moduleUrl: URL,
  opts: { args?: string[]; execArgv?: string[]; env?: NodeJS.ProcessEnv } = {},
): BenchChild {
  const child = fork(fileURLToPath(moduleUrl), opts.args ?? [], {
    cwd: packageRoot(),
    execArgv: [...(moduleUrl.pathname.endsWith('.ts') ? ['--import', 'tsx'] : []), ...(opts.execArgv ?? [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...opts.env },
  });
  // Children die with the harness even when it crashes, so a run never leaves a process behind.
  const exited = reapOnExit(child, 'SIGKILL');
  const listeners = new Map<string, Set<(message: ChildMessage) => void>>();
  child.on('message', (raw) => {
    const message = raw as ChildMessage;
    for (const listener of listeners.get(message.type) ?? []) listener(message);
    if (message.type !== 'error') return;
    for (const listener of listeners.get('*error') ?? []) listener(message);
  });
  const on = (type: string, listener: (message: ChildMessage) => void) => {
    const set = listeners.get(type) ?? new Set();
    set.add(listener);
    listeners.set(type, set);
    return () => set.delete(listener);
  };

  return {
    process: child,
    get pid() {
      return child.pid ?? -1;
    },
    send: (message) => {
      child.send(message);
    },
    on,
    next<T extends { type: string }>(type: string, timeoutMs = 600_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const offs: Array<() => void> = [];
        const settle = (fn: () => void) => {
          for (const off of offs) off();
          clearTimeout(timer);
          fn();
        };
        const timer = setTimeout(
          () => settle(() => reject(new Error(`bench child: no "${type}" within ${timeoutMs} ms`))),
          timeoutMs,
        );
        offs.push(on(type, (m) => settle(() => resolve(m as T))));
        offs.push(on('*error', (m) => settle(() => reject(new Error(`bench child: ${String(m.message)}`)))));
        void exited.then((code) =>
          settle(() => reject(new Error(`bench child exited (code ${code}) before "${type}"`))),
        );
      });
    },
    async exited(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      const result = await Promise.race([exited.then(() => true), late]);
      clearTimeout(timer);
      return result;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** For child modules: report a failure to the parent and exit; exit too when the parent goes away. */
export function childMain(run: () => Promise<void>): void {
  process.on('disconnect', () => process.exit());
  run().catch((err: Error) => {
    process.send?.({ type: 'error', message: err.stack ?? err.message });
    process.exitCode = 1;
    process.disconnect?.();
  });
}
