/**
 * Warnings ahead of a deadline (a grant's consent deadline, a client secret's end), each sent once
 * per window: the decision is pure, and what was warned is persisted by the caller (a
 * compare-and-swap in the store) so replicas and restarts do not repeat it.
 */

const DAY_MS = 24 * 3600_000;

/** A grant's hard end or consent deadline: 7 days ahead, and again at 1 day. */
export const DEFAULT_GRANT_WARNING_WINDOWS_MS: readonly number[] = [7 * DAY_MS, DAY_MS];
/** A client secret's end: 30 days ahead. */
export const DEFAULT_SECRET_WARNING_WINDOWS_MS: readonly number[] = [30 * DAY_MS];

/** The last warning sent: for which deadline, and in which window (its width in ms). */
export interface WarnedMark {
  deadline: number;
  windowMs: number;
}

/**
 * The window a warning is due for now, or undefined. It is the narrowest window the deadline has
 * entered (a deadline first seen 12 h ahead gets the 1-day warning, not a stale 7-day one too),
 * due unless that window, or a narrower one, was already warned for this same deadline. A deadline
 * that moved (a refresh reset the idle clock, a re-consent set a new end) starts afresh.
 */
export function dueWarning(
  deadline: number,
  windowsMs: readonly number[],
  warned: WarnedMark | null,
  now: number,
): number | undefined {
  const left = deadline - now;
  const entered = windowsMs.filter((w) => left <= w);
  if (entered.length === 0) return undefined;
  const narrowest = Math.min(...entered);
  if (warned && warned.deadline === deadline && warned.windowMs <= narrowest) return undefined;
  return narrowest;
}

/** The widest window: how far ahead candidates must be looked for. */
export function widestWindow(windowsMs: readonly number[]): number {
  return windowsMs.length === 0 ? 0 : Math.max(...windowsMs);
}

/** How a mark is kept in the store's service state: `window@deadline`. */
export function encodeMark(mark: WarnedMark): string {
  return `${mark.windowMs}@${mark.deadline}`;
}

/** A damaged or foreign value reads as "nothing warned": at worst one warning repeats. */
export function decodeMark(value: string | null): WarnedMark | null {
  const m = value === null ? null : /^(\d{1,15})@(-?\d{1,15})$/.exec(value);
  return m ? { windowMs: Number(m[1]), deadline: Number(m[2]) } : null;
}
