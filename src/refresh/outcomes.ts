import type { ErrorCode } from '../errors/error-codes.js';
import type { Grant, GrantTokens } from '../grants/grant.js';

import type { StorageFailure } from '../grants/storage-error.js';

import type { TokenEndpointError } from '../oauth/token-errors.js';

/*
 * What a refresh or a token read can come to: the vocabulary the refresher, the reader, metrics,
 * traces and alerts share. A leaf module, so telemetry and observers can name outcomes without
 * importing the refresher that produces them.
 */

export type RefreshTrigger = 'schedule' | 'on_demand' | 'forced';

export type RefreshResult =
  /** New tokens are committed; `grant` is the new row (version moved on by one). */
  | { status: 'refreshed'; grant: Grant; tokens: GrantTokens }
  /** The grant moved on, stopped or vanished since the caller looked: nothing to do. */
  | { status: 'stale' }
  /** Another refresh holds the lease; ask again at `retryAt` (this process's clock). */
  | { status: 'busy'; retryAt: number }
  /**
   * An earlier request's answer was lost on a provider that may revoke the grant on a replay:
   * nobody may send the stored refresh token before `retryAt` (invariant 2).
   */
  | { status: 'in_doubt'; retryAt: number }
  /** Our lease was gone or too short when we were about to send: nothing was sent. */
  | { status: 'lease_lost'; retryAt: number }
  /** Another holder of the grant rotated it while we were asking: its tokens stand. */
  | { status: 'overtaken' }
  /** A transient failure (or a lost answer): recorded; the grant is due again at `grant.nextRefreshAt`. */
  | { status: 'retrying'; grant: Grant; error: TokenEndpointError; inDoubt: boolean }
  /**
   * A permanent failure: the grant now needs an operator (`needs_reconsent` or `client_error`).
   * `incident`: its client is failing, and the client's one incident covers it (no alert of its own).
   */
  | { status: 'stopped'; grant: Grant; error: TokenEndpointError; incident?: boolean }
  /** An answer came for a grant stopped meanwhile: its tokens are stored, its state is kept. */
  | { status: 'conflict'; grant: Grant }
  /** grantkeeper cannot use the grant (its tokens do not open, its client is gone): `broken`. */
  | { status: 'broken'; grant: Grant }
  /** The database cannot take writes (locked, disk full): nothing was sent; ask again at `retryAt`. */
  | { status: 'deferred'; retryAt: number; cause: StorageFailure }
  /**
   * The client is paced (its rate is spent, it is paused after a 429, or its one probe is out):
   * nothing was sent and the grant is untouched; ask again at `retryAt`.
   */
  | { status: 'paced'; retryAt: number; reason: 'paused' | 'probing' | 'refused' | 'rate' };

/** Why a token read failed: codes of the error vocabulary, a stopped grant's being its state. */
export type TokenReadFailure = Extract<
  ErrorCode,
  | 'not_found'
  | 'needs_reconsent'
  | 'client_error'
  | 'broken'
  | 'min_valid_unsatisfiable'
  | 'unavailable'
  /** The database cannot store a new token now (disk full, locked): its message names no grant. */
  | 'storage_unavailable'
>;
