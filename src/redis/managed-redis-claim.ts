import { randomBytes } from 'node:crypto';
import { linkSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { isProcessAlive, processStartTicks } from './process-info.js';

/**
 * Who runs the managed redis-server of a data folder. Each start claims the next number,
 * `owner.<n>`, by creating that file atomically (link(2) fails when it exists), so of two starters
 * exactly one wins a number; the current owner is the highest number. A claim whose process is gone
 * is superseded by the next number, never deleted first, so a takeover cannot race with another.
 */
const claimSchema = z
  .object({
    ownerPid: z.number().int().positive(),
    /** /proc start time of the owner: a pid reused by another process does not match it. */
    ownerStart: z.string().nullable(),
    host: z.string(),
    redisPid: z.number().int().positive().nullable(),
    port: z.number().int().min(1).max(65_535).nullable(),
    claimedAt: z.number(),
    /** Set by the owner once it has stopped its redis-server. */
    stoppedAt: z.number().nullable(),
  })
  .strict();
export type ClaimRecord = z.infer<typeof claimSchema>;

export type OwnerState = 'alive' | 'gone' | 'stopped' | 'elsewhere';

const CLAIM_FILE = /^owner\.(\d+)$/;
const CLAIM_ATTEMPTS = 10;

export interface CurrentClaim {
  seq: number;
  path: string;
  /** Undefined when the file does not parse (a crash mid-write on some file systems): a dead claim. */
  record: ClaimRecord | undefined;
}

/** The highest claim in the folder, or undefined when nobody ever claimed it. */
export function readCurrentClaim(folder: string): CurrentClaim | undefined {
  const seq = claimNumbers(folder).at(-1);
  if (seq === undefined) return undefined;
  const path = join(folder, `owner.${seq}`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    // Superseded and removed between the listing and the read: look again.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return readCurrentClaim(folder);
    throw err;
  }
  let record: ClaimRecord | undefined;
  try {
    record = claimSchema.parse(JSON.parse(text));
  } catch {
    record = undefined;
  }
  return { seq, path, record };
}

export function ownerState(record: ClaimRecord): OwnerState {
  if (record.stoppedAt !== null) return 'stopped';
  // A pid means nothing on another machine sharing the folder (or in another container).
  if (record.host !== hostname()) return 'elsewhere';
  if (!isProcessAlive(record.ownerPid)) return 'gone';
  const start = processStartTicks(record.ownerPid);
  return record.ownerStart !== null && start !== null && start !== record.ownerStart ? 'gone' : 'alive';
}

/** Another process owns the folder's managed redis-server. */
export class ManagedRedisOwnedError extends GrantkeeperError<'redis_unavailable'> {
  constructor(
    readonly record: ClaimRecord,
    message: string,
  ) {
    super('redis_unavailable', message);
  }
}

export class OwnedClaim {
  constructor(
    readonly folder: string,
    private readonly seq: number,
    private record: ClaimRecord,
    /** The claim this one superseded: its redis-server may still run (owner killed -9). */
    readonly previous: ClaimRecord | undefined,
  ) {}

  update(patch: Partial<Pick<ClaimRecord, 'redisPid' | 'port' | 'stoppedAt'>>): void {
    this.record = { ...this.record, ...patch };
    // Replaced whole by rename: a reader never sees half a record.
    const tmp = tempPath(this.folder);
    writeFileSync(tmp, JSON.stringify(this.record), { mode: 0o600 });
    renameSync(tmp, join(this.folder, `owner.${this.seq}`));
  }

  /** Kept (marked stopped) rather than deleted: the next owner reuses its port, so clients reconnect. */
  release(): void {
    this.update({ redisPid: null, stoppedAt: Date.now() });
  }
}

/**
 * Claims the folder for this process, or throws ManagedRedisOwnedError naming the live owner. The
 * caller must then stop whatever redis-server `previous` left behind before starting its own.
 */
export function claimManagedRedis(folder: string): OwnedClaim {
  for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
    const current = readCurrentClaim(folder);
    const previous = current?.record;
    const state = previous ? ownerState(previous) : 'gone';
    if (previous && state === 'alive') {
      throw new ManagedRedisOwnedError(
        previous,
        `the managed Redis of this data folder belongs to another grantkeeper run (pid ${previous.ownerPid}): ` +
          'stop that one first, or point every worker at one Redis with REDIS_URL to run several on one folder',
      );
    }
    if (previous && state === 'elsewhere') {
      throw new ManagedRedisOwnedError(
        previous,
        `the managed Redis in ${folder} was started by pid ${previous.ownerPid} on ${previous.host}, and from ` +
          `here grantkeeper cannot tell whether it still runs: stop it there, or delete ${current?.path} if that machine is gone`,
      );
    }
    const seq = (current?.seq ?? 0) + 1;
    const record: ClaimRecord = {
      ownerPid: process.pid,
      ownerStart: processStartTicks('self'),
      host: hostname(),
      redisPid: null,
      port: previous?.port ?? null,
      claimedAt: Date.now(),
      stoppedAt: null,
    };
    if (!createClaimFile(folder, seq, record)) continue;
    // A starter that read an older number may have won a higher one meanwhile: the highest owns.
    if ((readCurrentClaim(folder)?.seq ?? seq) > seq) {
      rmSync(join(folder, `owner.${seq}`), { force: true });
      continue;
    }
    for (const older of claimNumbers(folder).filter((n) => n < seq)) {
      rmSync(join(folder, `owner.${older}`), { force: true });
    }
    return new OwnedClaim(folder, seq, record, previous);
  }
  throw new GrantkeeperError(
    'redis_unavailable',
    `could not claim the managed Redis in ${folder}: other processes keep claiming it`,
  );
}

function claimNumbers(folder: string): number[] {
  return readdirSync(folder)
    .map((name) => CLAIM_FILE.exec(name)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** False when that number is taken. */
function createClaimFile(folder: string, seq: number, record: ClaimRecord): boolean {
  const tmp = tempPath(folder);
  writeFileSync(tmp, JSON.stringify(record), { mode: 0o600 });
  try {
    linkSync(tmp, join(folder, `owner.${seq}`));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
}

function tempPath(folder: string): string {
  return join(folder, `.owner-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
}
