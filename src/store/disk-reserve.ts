import { randomFillSync } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  openSync,
  renameSync,
  statfsSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

export const RESERVE_FILE_NAME = 'grantkeeper.reserve';

const CHUNK_BYTES = 64 * 1024;

/**
 * Disk space set aside beside the database, given back the moment a write fails for lack of room,
 * so tokens a provider has already rotated can still be stored when something else filled the disk.
 * The file is random bytes: zeros would take no room on a compressing or hole-punching file system.
 */
export class DiskReserve {
  readonly path: string;

  constructor(
    readonly dir: string,
    readonly bytes: number,
  ) {
    this.path = join(dir, RESERVE_FILE_NAME);
  }

  /** True once the reserve stands at full size, writing it first if it is missing and there is room. */
  ensure(): boolean {
    if (this.bytes <= 0 || this.heldBytes() >= this.bytes) return true;
    // Written aside and renamed, so processes sharing the folder never see half a reserve as whole.
    const partial = `${this.path}.${process.pid}.tmp`;
    let fd: number | undefined;
    try {
      fd = openSync(partial, 'w', 0o600);
      const chunk = Buffer.alloc(CHUNK_BYTES);
      for (let left = this.bytes; left > 0; left -= CHUNK_BYTES) {
        const piece = left >= CHUNK_BYTES ? chunk : chunk.subarray(0, left);
        randomFillSync(piece);
        writeSync(fd, piece);
      }
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(partial, this.path);
      return true;
    } catch {
      if (fd !== undefined) closeSync(fd);
      removeQuietly(partial);
      return false;
    }
  }

  /** Gives the reserve's space back to the file system; true if there was any to give. */
  release(): boolean {
    const held = this.heldBytes();
    removeQuietly(this.path);
    return held > 0;
  }

  /** Bytes the reserve holds now (0 when released or never made). */
  heldBytes(): number {
    try {
      return statSync(this.path).size;
    } catch {
      return 0;
    }
  }

  /** Bytes an unprivileged writer may still use on the reserve's file system. */
  freeBytes(): number {
    const fs = statfsSync(this.dir);
    return fs.bavail * fs.bsize;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
