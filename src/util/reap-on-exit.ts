import type { ChildProcess } from 'node:child_process';

const live = new Map<ChildProcess, NodeJS.Signals>();
let hooked = false;

/**
 * Sends `child` `signal` if this process exits first, so a parent that finishes or crashes leaves
 * no child behind (the 'exit' hook can only do synchronous work: a signal, not a wait). Resolves
 * with the child's exit code once it has exited.
 */
export function reapOnExit(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const [c, s] of live) c.kill(s);
    });
  }
  live.set(child, signal);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      live.delete(child);
      resolve(code);
    }),
  );
}
