import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GrantRow } from '../../db/schema.js';
import { UserError } from '../errors/user-error.js';
import type { Logger } from '../log/logger.js';
import type { TokenClient } from '../oauth/token-client.js';
import { TokenEndpointError } from '../oauth/token-errors.js';
import type { TokenSet } from '../oauth/token-response.js';
import { type BackoffPolicy, retryDelayMs } from '../policy/backoff.js';
import { planAfterTokenResponse } from '../policy/refresh-plan.js';
import type { RefreshTimingPolicy } from '../policy/refresh-timing.js';
import type { ClientStore, OpenedClient } from '../store/client-store.js';
import type { GrantStore } from '../store/grant-store.js';
import { STORAGE_RETRY_MS, type StorageFailure, storageFailureOf } from '../store/storage-errors.js';
import type { StorageGate } from '../store/storage-gate.js';
import type { RefreshAttempt, RefreshObserver } from './refresh-observer.js';

export type RefreshTrigger = 'schedule' | 'on_demand' | 'forced';

export type RefreshResult =
  /** New tokens are committed; `grant` is the new row (version moved on by one). */
  | { status: 'refreshed'; grant: GrantRow }
  /** The grant moved on, stopped or vanished since the caller looked: nothing to do. */
  | { status: 'stale' }
  /** Another refresh holds the lease until `leaseUntil`. */
  | { status: 'busy'; leaseUntil: number }
  /** Another holder of the grant rotated it while we were asking: its tokens stand. */
  | { status: 'overtaken' }
  /** A transient failure: recorded, and the grant is due again at `grant.nextRefreshAt`. */
  | { status: 'retrying'; grant: GrantRow; error: TokenEndpointError }
  /** A permanent failure: the grant now needs an operator (`needs_reconsent` or `client_error`). */
  | { status: 'stopped'; grant: GrantRow; error: TokenEndpointError }
  /** The database cannot take writes (locked, disk full): nothing was sent; ask again at `retryAt`. */
  | { status: 'deferred'; retryAt: number; cause: StorageFailure };

export interface GrantRefresherDeps {
  grants: GrantStore;
  clients: ClientStore;
  tokenClient: TokenClient;
  timing: RefreshTimingPolicy;
  backoff: BackoffPolicy;
  logger: Logger;
  /** Closed while the disk is full: no refresh may start whose answer could not be stored. */
  storage: StorageGate;
  /**
   * How long a claim is held. It must outlive the token request's timeout by a margin, so a second
   * claim can never start while our request may still reach the provider.
   */
  leaseMs: number;
  observers?: RefreshObserver[];
  now?: () => number;
}

/**
 * Retry pace for storing tokens already received: often, so that when space returns these writes
 * land before anyone's next claim (a locked database paces them by its busy timeout anyway).
 */
const HELD_RETRY_MS = 250;

/**
 * The one place a grant's tokens are refreshed, for the worker and for on-demand readers alike:
 * claim the lease, ask the token endpoint, commit the answer, classify a failure.
 */
export class GrantRefresher {
  private readonly now: () => number;
  private readonly ownerPrefix = randomBytes(4).toString('hex');
  private claims = 0;
  /** Grants this process has claimed and not yet settled. */
  private readonly active = new Set<string>();
  /** Of those, the ones whose received tokens the db has refused so far. */
  private readonly held = new Set<string>();

  constructor(private readonly deps: GrantRefresherDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** The timing policy in force, for callers that plan a schedule the same way (consent capture). */
  get timing(): RefreshTimingPolicy {
    return this.deps.timing;
  }

  async refresh(grantId: string, version: number, trigger: RefreshTrigger): Promise<RefreshResult> {
    const { grants, storage } = this.deps;
    const blockedUntil = storage.blockedUntil();
    if (blockedUntil !== undefined) {
      return { status: 'deferred', retryAt: blockedUntil, cause: 'disk_full' };
    }
    // Our own lease may have run out under us (a long lock stalls the event loop, and BullMQ then
    // hands the same job out again): a grant this process is refreshing is never claimed twice.
    if (this.active.has(grantId)) return { status: 'busy', leaseUntil: this.now() + this.deps.leaseMs };
    const owner = `${this.ownerPrefix}.${++this.claims}`;
    let grant: GrantRow | undefined;
    try {
      grant = grants.claim(grantId, version, owner, this.now(), this.deps.leaseMs);
    } catch (err) {
      return this.deferForStorage(err);
    }
    if (!grant) {
      const current = grants.get(grantId);
      if (current?.version === version && current.leaseUntil !== null && current.leaseUntil >= this.now()) {
        return { status: 'busy', leaseUntil: current.leaseUntil };
      }
      return { status: 'stale' };
    }
    this.active.add(grantId);
    try {
      const started = this.now();
      const client = this.openClient(grant);
      const result = await this.refreshClaimed(grant, client, owner, trigger);
      this.notify(grant, client, trigger, this.now() - started, result);
      return result;
    } catch (err) {
      // Anything unexpected (a failure record the db refused, a sealing error): free the grant for
      // the next attempt. Received tokens never get here: they are held until stored.
      try {
        grants.releaseLease(grantId, owner);
      } catch {
        // The lease then runs out on its own.
      }
      return this.deferForStorage(err);
    } finally {
      this.active.delete(grantId);
    }
  }

  /** Grants whose new tokens this process holds in memory because the database refused them. */
  heldGrantIds(): string[] {
    return [...this.held];
  }

  /** A storage failure before anything was sent becomes a deferral; anything else is a bug. */
  private deferForStorage(err: unknown): RefreshResult {
    const cause = storageFailureOf(err);
    if (!cause) throw err;
    if (cause === 'disk_full') this.deps.storage.reportOutOfSpace();
    return { status: 'deferred', retryAt: this.now() + STORAGE_RETRY_MS, cause };
  }

  private async refreshClaimed(
    grant: GrantRow,
    client: OpenedClient,
    owner: string,
    trigger: RefreshTrigger,
  ): Promise<RefreshResult> {
    const refreshToken = this.deps.grants.openRefreshToken(grant);
    const sentAt = this.now();
    let tokens: TokenSet;
    try {
      tokens = await this.deps.tokenClient.refresh(client.target, refreshToken);
    } catch (err) {
      return this.recordFailure(grant, owner, trigger, client, asTokenError(err), this.now() - sentAt);
    }
    return this.commit(grant, owner, trigger, client, tokens, sentAt);
  }

  private async commit(
    grant: GrantRow,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    tokens: TokenSet,
    sentAt: number,
  ): Promise<RefreshResult> {
    const now = this.now();
    const plan = planAfterTokenResponse(tokens, sentAt, now, client.profile, this.deps.timing, grant.mode);
    const write = () =>
      this.deps.grants.commitRefresh(
        grant.id,
        grant.version,
        {
          accessToken: tokens.accessToken,
          ...(tokens.refreshToken === undefined ? {} : { refreshToken: tokens.refreshToken }),
          ...(tokens.tokenType === undefined ? {} : { tokenType: tokens.tokenType }),
          ...(tokens.scope === undefined ? {} : { scope: tokens.scope }),
          accessExpiresAt: plan.accessExpiresAt,
          accessLifetimeMs: plan.accessLifetimeMs,
          refreshTokenUsedAt: plan.refreshTokenUsedAt,
          nextRefreshAt: plan.nextRefreshAt,
        },
        {
          at: now,
          trigger,
          outcome: 'refreshed',
          durationMs: now - sentAt,
          rotated: tokens.refreshToken !== undefined,
          message: plan.defaultedLifetime
            ? 'no expires_in in the response: provider default lifetime used'
            : null,
        },
      );
    const committed = await this.storeReceived(grant, owner, write);
    if (!committed) {
      this.deps.logger.warn(
        { grantId: grant.id, version: grant.version },
        'refresh answered after another holder had already moved the grant on; its newer tokens stand',
      );
      return { status: 'overtaken' };
    }
    this.deps.logger.info(
      {
        grantId: grant.id,
        version: committed.version,
        trigger,
        rotated: tokens.refreshToken !== undefined,
        expiresAt: new Date(committed.accessExpiresAt).toISOString(),
        nextRefreshAt: new Date(committed.nextRefreshAt).toISOString(),
      },
      'grant refreshed',
    );
    return { status: 'refreshed', grant: committed };
  }

  /**
   * Stores tokens the provider has already issued. The refresh token they replace may be spent, so
   * dropping them could lose the grant: a write refused by a full disk, a lock or an I/O error is
   * held and retried, under a lease kept alive, for as long as this process lives.
   */
  private async storeReceived(
    grant: GrantRow,
    owner: string,
    write: () => GrantRow | undefined,
  ): Promise<GrantRow | undefined> {
    let failure: StorageFailure | undefined;
    try {
      return write();
    } catch (err) {
      failure = storageFailureOf(err);
      if (!failure) throw err;
    }
    const { logger, grants, storage } = this.deps;
    const heldSince = this.now();
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
          grants.extendLease(grant.id, grant.version, owner, this.now() + this.deps.leaseMs);
        } catch {
          // A write like any other: while it fails, other claims fail the same way.
        }
        if (attempt > 0) await sleep(HELD_RETRY_MS);
        try {
          const row = write();
          logger.warn({ grantId: grant.id, heldMs: this.now() - heldSince }, 'held tokens stored');
          return row;
        } catch (err) {
          failure = storageFailureOf(err);
          if (!failure) throw err;
        }
      }
    } finally {
      this.held.delete(grant.id);
    }
  }

  private recordFailure(
    grant: GrantRow,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    error: TokenEndpointError,
    durationMs: number,
  ): RefreshResult {
    const { grants, logger } = this.deps;
    const now = this.now();
    const event = {
      at: now,
      trigger,
      durationMs,
      httpStatus: error.status ?? null,
      errorCode: error.code,
      message: error.message,
    };
    // A spent token may only mean that someone else rotated first (invariant 4): ask the db.
    if (error.spentToken) {
      const current = grants.get(grant.id);
      if (current && current.version !== grant.version) {
        grants.recordEvent(grant.id, grant.version, { ...event, outcome: 'overtaken' });
        logger.info(
          { grantId: grant.id, version: grant.version },
          'refresh token already rotated by another holder',
        );
        return { status: 'overtaken' };
      }
    }
    if (error.kind === 'permanent') {
      const state = error.outcome === 'client_error' ? 'client_error' : 'needs_reconsent';
      const stopped = grants.recordFailure(
        grant.id,
        grant.version,
        owner,
        { state, message: error.message },
        {
          ...event,
          outcome: state,
        },
      );
      if (!stopped) return { status: 'overtaken' };
      logger.error(
        { grantId: grant.id, provider: client.profile.kind, code: error.code, status: error.status, state },
        state === 'needs_reconsent'
          ? 'grant refused by the provider: it needs a new consent (grantkeeper seed)'
          : 'client rejected by the provider: check the client id and secret',
      );
      return { status: 'stopped', grant: stopped, error };
    }
    const delay = retryDelayMs(
      {
        consecutiveFailures: grant.consecutiveFailures + 1,
        ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      },
      this.deps.backoff,
    );
    const failing = grants.recordFailure(
      grant.id,
      grant.version,
      owner,
      { state: 'failing', nextRefreshAt: now + delay, message: error.message },
      { ...event, outcome: 'transient_error' },
    );
    if (!failing) return { status: 'overtaken' };
    logger.warn(
      {
        grantId: grant.id,
        provider: client.profile.kind,
        code: error.code,
        status: error.status,
        failures: failing.consecutiveFailures,
        retryInMs: delay,
      },
      'refresh failed; will retry',
    );
    return { status: 'retrying', grant: failing, error };
  }

  private notify(
    grant: GrantRow,
    client: OpenedClient,
    trigger: RefreshTrigger,
    durationMs: number,
    result: RefreshResult,
  ): void {
    const { observers } = this.deps;
    if (!observers?.length) return;
    const attempt: RefreshAttempt = {
      grantId: grant.id,
      provider: client.profile.kind,
      trigger,
      durationMs,
      previousState: grant.state,
      previousFailures: grant.consecutiveFailures,
    };
    for (const observer of observers) {
      try {
        observer.onRefreshResult(attempt, result);
      } catch (err) {
        this.deps.logger.warn({ err: { message: (err as Error).message } }, 'refresh observer failed');
      }
    }
  }

  private openClient(grant: GrantRow): OpenedClient {
    const client = this.deps.clients.openById(grant.clientRef);
    if (!client) throw new Error(`grant ${grant.id} names client ${grant.clientRef}, which no longer exists`);
    return client;
  }
}

/**
 * A configuration problem (no secret, an http endpoint off loopback) will not fix itself: it stops
 * the grant as a client error. Anything else unexpected is retried like a transient failure.
 */
function asTokenError(err: unknown): TokenEndpointError {
  if (err instanceof TokenEndpointError) return err;
  if (err instanceof UserError) {
    return new TokenEndpointError(
      { kind: 'permanent', outcome: 'client_error', code: 'client_misconfigured', message: err.message },
      { cause: err },
    );
  }
  return new TokenEndpointError(
    { kind: 'transient', outcome: 'retry', code: 'internal', message: 'token request failed unexpectedly' },
    { cause: err },
  );
}
