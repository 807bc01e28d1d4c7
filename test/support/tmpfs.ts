import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  dir: string;
  unmount(): void;
}

/**
 * A small file system of its own, so a test can fill it without touching the machine's disk.
 * Needs root (as CI has); otherwise says why, and the caller skips.
 */
export function mountTmpfs(sizeBytes: number): Tmpfs | { unavailable: string } {
  if (process.platform !== 'linux') return { unavailable: 'tmpfs mounts need Linux' };
  if (process.getuid?.() !== 0) return { unavailable: 'mounting a tmpfs needs root' };
  const dir = mkdtempSync(join(tmpdir(), 'gk-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], {
      stdio: 'pipe',
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    return {
      unavailable: `mount -t tmpfs failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`,
    };
  }
  return {
    dir,
    unmount: () => {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Why this machine cannot mount a tmpfs (checked by mounting one), or undefined when it can. */
export function tmpfsUnavailable(): string | undefined {
  const probe = mountTmpfs(64 * 1024);
  if ('unavailable' in probe) return probe.unavailable;
  probe.unmount();
  return undefined;
}

export interface Filler {
  bytes: number;
  /** Gives the space back (again is harmless). */
  release(): void;
}

/** Writes a file in `dir` until the file system refuses another byte. */
export function fillDisk(dir: string): Filler {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  let bytes = 0;
  try {
    for (const size of [1024 * 1024, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0xa5);
      try {
        for (;;) bytes += writeSync(fd, chunk);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, release: () => rmSync(path, { force: true }) };
}
