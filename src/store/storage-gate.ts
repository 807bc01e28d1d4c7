import { STORAGE_RETRY_MS } from '../grants/storage-error.js';
import type { Logger } from '../log/logger.js';
import type { DiskReserve } from './disk-reserve.js';

/** Free space wanted beyond a rewritten reserve before refreshes start again. */
const RESUME_HEADROOM_BYTES = 1024 * 1024;

/** What the gate uses of the reserve (a fake one in unit tests). */
export type Reserve = Pick<
  DiskReserve,
  'dir' | 'path' | 'bytes' | 'ensure' | 'release' | 'freeBytes' | 'heldBytes'
>;

export interface StorageGateOptions {
  reserve: Reserve;
  logger: Logger;
  /**
   * How often a paused gate looks at the disk again, and how long a refused refresh waits. Space
   * must also stay free this long before refreshes resume: holders of received tokens, here or in
   * another process, retry far more often and so store theirs before anyone claims again.
   */
  retryMs?: number;
  now?: () => number;
}

/**
 * Stops new refreshes from starting while the disk holding the database is full. A refresh that
 * cannot be stored must not be started: the provider would rotate the refresh token and the new one
 * would exist only in memory. Tokens already received are stored first, from the released reserve.
 * The gate looks at the disk again lazily, when a refresh asks, so an idle service runs no timer.
 */
export class StorageGate {
  private pausedAt: number | undefined;
  private lastProbeAt = 0;
  /** When a paused gate first saw room again. */
  private roomSince: number | undefined;
  private readonly retryMs: number;
  private readonly now: () => number;

  constructor(private readonly options: StorageGateOptions) {
    this.retryMs = options.retryMs ?? STORAGE_RETRY_MS;
    this.now = options.now ?? Date.now;
  }

  get paused(): boolean {
    return this.pausedAt !== undefined;
  }

  /** For `status`: the disk as the gate sees it. `low` means refreshes would not resume now. */
  diskReport(): { freeBytes: number; reserveBytes: number; reserveHeldBytes: number; low: boolean } {
    const { reserve } = this.options;
    const freeBytes = reserve.freeBytes();
    return {
      freeBytes,
      reserveBytes: reserve.bytes,
      reserveHeldBytes: reserve.heldBytes(),
      low: freeBytes < reserve.bytes + RESUME_HEADROOM_BYTES,
    };
  }

  /** Sets the reserve aside at start-up; a disk too full for it is worth a warning, not a refusal. */
  prepare(): void {
    const { reserve, logger } = this.options;
    if (!reserve.ensure()) {
      logger.warn(
        { path: reserve.path, bytes: reserve.bytes },
        'could not set aside the disk reserve: the disk is nearly full; free space soon',
      );
    }
  }

  /** Undefined while refreshes may start; otherwise when to ask again. */
  blockedUntil(): number | undefined {
    if (this.pausedAt === undefined) return undefined;
    const now = this.now();
    if (now - this.lastProbeAt >= this.retryMs && this.probe(now)) return undefined;
    return now + this.retryMs;
  }

  /** A write failed for lack of room: pause new refreshes and free the reserve for writes in hand. */
  reportOutOfSpace(): void {
    const { reserve, logger } = this.options;
    const now = this.now();
    this.lastProbeAt = now;
    // Released every time: another process sharing the folder may have rewritten it meanwhile.
    const released = reserve.release();
    this.roomSince = undefined;
    if (this.pausedAt !== undefined) return;
    this.pausedAt = now;
    logger.error(
      { dir: reserve.dir, reserveReleasedBytes: released ? reserve.bytes : 0 },
      'the disk holding the database is full: new refreshes are paused until space is freed; tokens already received are stored first',
    );
  }

  private probe(now: number): boolean {
    const { reserve, logger } = this.options;
    this.lastProbeAt = now;
    let free: number;
    try {
      free = reserve.freeBytes();
    } catch {
      return false;
    }
    if (free < reserve.bytes + RESUME_HEADROOM_BYTES) {
      this.roomSince = undefined;
      return false;
    }
    this.roomSince ??= now;
    if (now - this.roomSince < this.retryMs || !reserve.ensure()) return false;
    this.roomSince = undefined;
    logger.info(
      { pausedMs: now - (this.pausedAt ?? now), freeBytes: free },
      'disk space is back: refreshes resumed',
    );
    this.pausedAt = undefined;
    return true;
  }
}
