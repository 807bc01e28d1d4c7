import { randomBytes } from 'node:crypto';
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
  | { status: 'stopped'; grant: GrantRow; error: TokenEndpointError };

export interface GrantRefresherDeps {
  grants: GrantStore;
  clients: ClientStore;
  tokenClient: TokenClient;
  timing: RefreshTimingPolicy;
  backoff: BackoffPolicy;
  logger: Logger;
  /**
   * How long a claim is held. It must outlive the token request's timeout by a margin, so a second
   * claim can never start while our request may still reach the provider.
   */
  leaseMs: number;
  observers?: RefreshObserver[];
  now?: () => number;
}

/**
 * The one place a grant's tokens are refreshed, for the worker and for on-demand readers alike:
 * claim the lease, ask the token endpoint, commit the answer, classify a failure.
 */
export class GrantRefresher {
  private readonly now: () => number;
  private readonly ownerPrefix = randomBytes(4).toString('hex');
  private claims = 0;

  constructor(private readonly deps: GrantRefresherDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** The timing policy in force, for callers that plan a schedule the same way (consent capture). */
  get timing(): RefreshTimingPolicy {
    return this.deps.timing;
  }

  async refresh(grantId: string, version: number, trigger: RefreshTrigger): Promise<RefreshResult> {
    const { grants } = this.deps;
    const owner = `${this.ownerPrefix}.${++this.claims}`;
    const grant = grants.claim(grantId, version, owner, this.now(), this.deps.leaseMs);
    if (!grant) {
      const current = grants.get(grantId);
      if (current?.version === version && current.leaseUntil !== null && current.leaseUntil >= this.now()) {
        return { status: 'busy', leaseUntil: current.leaseUntil };
      }
      return { status: 'stale' };
    }
    try {
      const started = this.now();
      const client = this.openClient(grant);
      const result = await this.refreshClaimed(grant, client, owner, trigger);
      this.notify(grant, client, trigger, this.now() - started, result);
      return result;
    } catch (err) {
      // Anything unexpected (a db error, a sealing error): free the grant for the next attempt.
      grants.releaseLease(grantId, owner);
      throw err;
    }
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
    return this.commit(grant, trigger, client, tokens, sentAt);
  }

  private commit(
    grant: GrantRow,
    trigger: RefreshTrigger,
    client: OpenedClient,
    tokens: TokenSet,
    sentAt: number,
  ): RefreshResult {
    const now = this.now();
    const plan = planAfterTokenResponse(tokens, sentAt, now, client.profile, this.deps.timing, grant.mode);
    const committed = this.deps.grants.commitRefresh(
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
