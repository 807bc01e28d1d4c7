import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeStorageFailure, StorageError, storageFailureOf } from '../../src/grants/storage-error.js';
import { createLogger } from '../../src/log/logger.js';
import { DiskReserve, RESERVE_FILE_NAME } from '../../src/store/disk-reserve.js';
import { guarded, sqliteFailureOf } from '../../src/store/sqlite/sqlite-errors.js';
import { type Reserve, StorageGate } from '../../src/store/storage-gate.js';

const MiB = 1024 * 1024;

/** A reserve on an imaginary disk whose free space the test sets. */
function fakeReserve(bytes: number) {
  const disk = { free: 100 * MiB, held: bytes, writes: 0 };
  const reserve: Reserve = {
    dir: '/data',
    path: '/data/grantkeeper.reserve',
    bytes,
    ensure: () => {
      if (disk.held >= bytes) return true;
      if (disk.free < bytes) return false;
      disk.free -= bytes;
      disk.held = bytes;
      disk.writes++;
      return true;
    },
    release: () => {
      const had = disk.held > 0;
      disk.free += disk.held;
      disk.held = 0;
      return had;
    },
    freeBytes: () => disk.free,
    heldBytes: () => disk.held,
  };
  return { reserve, disk };
}

function gateWith(bytes: number) {
  const clock = { now: 1_000_000 };
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (l: string) => lines.push(JSON.parse(l) as { level: number; msg: string }) },
  });
  const { reserve, disk } = fakeReserve(bytes);
  const gate = new StorageGate({ reserve, logger, retryMs: 2000, now: () => clock.now });
  return { gate, disk, clock, lines };
}

describe('StorageGate', () => {
  it('is open until a write runs out of space, then frees the reserve and says so once', () => {
    const { gate, disk, lines } = gateWith(8 * MiB);
    expect(gate.blockedUntil()).toBeUndefined();
    disk.free = 0;
    gate.reportOutOfSpace();
    gate.reportOutOfSpace();
    expect(gate.paused).toBe(true);
    expect(disk.held).toBe(0);
    expect(disk.free).toBe(8 * MiB);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    disk.free = 0;
    expect(gate.diskReport()).toEqual({
      freeBytes: 0,
      reserveBytes: 8 * MiB,
      reserveHeldBytes: 0,
      low: true,
    });
  });

  it('stays closed while the disk is short of a reserve plus headroom, looking again every retry period', () => {
    const { gate, disk, clock } = gateWith(8 * MiB);
    disk.free = 0;
    gate.reportOutOfSpace();
    expect(gate.blockedUntil()).toBe(clock.now + 2000);
    disk.free = 8 * MiB + 512 * 1024; // not a whole MiB of headroom after the reserve
    clock.now += 2000;
    expect(gate.blockedUntil()).toBe(clock.now + 2000);
    clock.now += 10_000;
    expect(gate.blockedUntil()).toBeDefined();
    expect(disk.writes).toBe(0);
  });

  it('resumes only after room has stayed free for a retry period, with the reserve written back', () => {
    const { gate, disk, clock, lines } = gateWith(8 * MiB);
    disk.free = 0;
    gate.reportOutOfSpace();
    disk.free = 50 * MiB;
    clock.now += 2000;
    // Room seen for the first time: holders of received tokens get the first go.
    expect(gate.blockedUntil()).toBeDefined();
    clock.now += 1000;
    expect(gate.blockedUntil()).toBeDefined(); // not probed again yet
    clock.now += 1000;
    expect(gate.blockedUntil()).toBeUndefined();
    expect(gate.paused).toBe(false);
    expect(disk.held).toBe(8 * MiB);
    expect(lines.at(-1)?.msg).toBe('disk space is back: refreshes resumed');
  });

  it('starts its settle period over when the disk fills again before it resumes', () => {
    const { gate, disk, clock } = gateWith(8 * MiB);
    disk.free = 0;
    gate.reportOutOfSpace();
    disk.free = 50 * MiB;
    clock.now += 2000;
    expect(gate.blockedUntil()).toBeDefined();
    clock.now += 1500;
    gate.reportOutOfSpace();
    clock.now += 2000;
    expect(gate.blockedUntil()).toBeDefined();
    clock.now += 2000;
    expect(gate.blockedUntil()).toBeUndefined();
  });

  it('without a reserve still waits for a MiB of headroom', () => {
    const { gate, disk, clock } = gateWith(0);
    disk.free = 0;
    gate.reportOutOfSpace();
    disk.free = 512 * 1024;
    for (let i = 0; i < 3; i++) {
      clock.now += 2000;
      expect(gate.blockedUntil()).toBeDefined();
    }
    disk.free = 2 * MiB;
    clock.now += 2000;
    gate.blockedUntil();
    clock.now += 2000;
    expect(gate.blockedUntil()).toBeUndefined();
  });
});

describe('DiskReserve', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes the reserve once, owner-only and incompressible, and gives it back', () => {
    dir = mkdtempSync(join(tmpdir(), 'gk-reserve-'));
    const reserve = new DiskReserve(dir, 256 * 1024);
    expect(reserve.ensure()).toBe(true);
    const path = join(dir, RESERVE_FILE_NAME);
    const stat = statSync(path);
    expect(stat.size).toBe(256 * 1024);
    expect(stat.mode & 0o777).toBe(0o600);
    const bytes = readFileSync(path);
    expect(bytes.subarray(0, 4096).every((b) => b === 0)).toBe(false);
    expect(reserve.ensure()).toBe(true);
    expect(statSync(path).mtimeMs).toBe(stat.mtimeMs); // already whole: not rewritten
    expect(reserve.freeBytes()).toBeGreaterThan(0);
    expect(reserve.release()).toBe(true);
    expect(reserve.release()).toBe(false);
    expect(reserve.heldBytes()).toBe(0);
  });

  it('reports failure and leaves nothing behind when it cannot write', () => {
    dir = mkdtempSync(join(tmpdir(), 'gk-reserve-'));
    const reserve = new DiskReserve(join(dir, 'missing-folder'), 1024);
    expect(reserve.ensure()).toBe(false);
    expect(reserve.heldBytes()).toBe(0);
  });

  it('costs nothing when turned off', () => {
    const reserve = new DiskReserve('/nonexistent', 0);
    expect(reserve.ensure()).toBe(true);
    expect(reserve.release()).toBe(false);
  });
});

describe('storage failure classification', () => {
  it.each([
    ['SQLITE_FULL', 'disk_full'],
    ['ENOSPC', 'disk_full'],
    ['SQLITE_BUSY', 'locked'],
    ['SQLITE_BUSY_SNAPSHOT', 'locked'],
    ['SQLITE_LOCKED', 'locked'],
    ['SQLITE_IOERR_WRITE', 'unavailable'],
    ['SQLITE_READONLY', 'unavailable'],
  ] as const)('%s is %s', (code, failure) => {
    const raw = Object.assign(new Error('x'), { code });
    expect(sqliteFailureOf(raw)).toBe(failure);
    let thrown: unknown;
    try {
      guarded(() => {
        throw raw;
      });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(StorageError);
    expect(storageFailureOf(thrown)).toBe(failure);
    expect((thrown as StorageError).cause).toBe(raw);
    expect(describeStorageFailure(failure)).toMatch(/database/);
  });

  it.each([
    ['a constraint', { code: 'SQLITE_CONSTRAINT_UNIQUE' }],
    ['no code', new Error('plain')],
    ['a non-error', 'SQLITE_FULL'],
    ['null', null],
  ])('%s is not a storage failure', (_name, err) => {
    expect(sqliteFailureOf(err)).toBeUndefined();
    expect(storageFailureOf(err)).toBeUndefined();
  });
});
