import { setTimeout as sleep } from 'node:timers/promises';
import type { Grant } from '../grants/grant.js';
import { type StorageFailure, storageFailureOf } from '../grants/storage-error.js';
import type { Logger } from '../log/logger.js';
import type { StorageGate } from '../store/storage-gate.js';

/**
 * Retry pace for storing tokens already received: often, so that when space returns these writes
 * land before anyone's next claim (a locked database paces them by its busy timeout anyway).
 */
const HELD_RETRY_MS = 250;

export interface HeldCommitDeps {
  logger: Logger;
  storage: StorageGate;
  /** Keeps the holder's lease alive between attempts; a refused write here is harmless. */
  keepLease(grant: Grant, owner: string): Promise<unknown>;
  now: () => number;
}

/**
 * Stores what a provider has already issued (invariant 3). The refresh token those tokens replace
 * may be spent, so dropping them could lose the grant: a write refused by a full disk, a lock or an
 * I/O error is held in memory and retried, under a lease kept alive, for as long as the process
 * lives. The "sent" mark on the lease keeps other holders off meanwhile (invariant 2).
 */
export class HeldCommit {
  /** Grants whose received tokens the db has refused so far. */
  private readonly held = new Set<string>();

  constructor(private readonly deps: HeldCommitDeps) {}

  grantIds(): string[] {
    return [...this.held];
  }

  async store<T>(grant: Grant, owner: string, write: () => Promise<T>): Promise<T> {
    let failure: StorageFailure | undefined;
    try {
      return await write();
    } catch (err) {
      failure = storageFailureOf(err);
      if (!failure) throw err;
    }
    const { logger, storage, now } = this.deps;
    const heldSince = now();
    this.held.add(grant.id);
    logger.error(
      { grantId: grant.id, version: grant.version, cause: failure },
      'new tokens received but the database refused them: holding them in memory and retrying',
    );
    try {
      for (let attempt = 0; ; attempt++) {
        // The first retry is immediate: a full disk has just had the reserve given back.
        if (failure === 'disk_full') storage.reportOutOfSpace();
        try {
          await this.deps.keepLease(grant, owner);
        } catch {
          // A write like any other: while it fails, other claims fail the same way.
        }
        if (attempt > 0) await sleep(HELD_RETRY_MS);
        try {
          const stored = await write();
          logger.warn({ grantId: grant.id, heldMs: now() - heldSince }, 'held tokens stored');
          return stored;
        } catch (err) {
          failure = storageFailureOf(err);
          if (!failure) throw err;
        }
      }
    } finally {
      this.held.delete(grant.id);
    }
  }
}
