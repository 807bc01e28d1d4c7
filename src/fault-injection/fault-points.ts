/**
 * Named points where the fault tests stop a real `grantkeeper run` process, to reproduce a pause
 * (SIGSTOP, a debugger, a VM stall) at an exact moment. Off unless GRANTKEEPER_FAULT_POINTS names
 * points (comma-separated); each named point fires once, by stopping the whole process with
 * SIGSTOP until the test sends SIGCONT. Nothing else reads this variable.
 */
export type FaultPoint =
  /** A refresh lease was claimed and its token request not yet fenced or sent. */
  'stop-after-claim';

const armed = new Set(
  (process.env.GRANTKEEPER_FAULT_POINTS ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean),
);

export function reachFaultPoint(point: FaultPoint): void {
  if (armed.size === 0 || !armed.delete(point)) return;
  process.kill(process.pid, 'SIGSTOP');
}

/**
 * The wall clock of this process, which the fault tests can set off by GRANTKEEPER_FAULT_CLOCK_OFFSET_MS
 * to play a machine whose clock is wrong. Leases never read it (they use the store's clock).
 */
export function installClockOffset(): void {
  const offset = Number(process.env.GRANTKEEPER_FAULT_CLOCK_OFFSET_MS ?? 0);
  if (!Number.isFinite(offset) || offset === 0) return;
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + offset;
}
