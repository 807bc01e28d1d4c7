import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { type Grant, type GrantState, isLive, type StoredGrant } from '../grants/grant.js';
import type { GrantRepository, RefreshScheduler } from '../grants/ports.js';
import { describeStorageFailure } from '../grants/storage-error.js';
import type { Logger } from '../log/logger.js';
import { SPAN_NAMES } from '../telemetry/span-policy.js';
import { inSpan, type TraceSpan, type Tracing } from '../telemetry/spans.js';
import { TIMED_OUT, withTimeout } from '../util/with-timeout.js';
import type { GrantRefresher } from './grant-refresher.js';
import type { RefreshResult, RefreshTrigger, TokenReadFailure } from './outcomes.js';

/** Why a token could not be handed out: the API answers its code's status, the CLI exits 1. */
export class TokenReadError extends GrantkeeperError<TokenReadFailure> {}

export interface AccessToken {
  grantId: string;
  label: string;
  accessToken: string;
  tokenType: string;
  expiresAt: number;
  /** True when this read had to refresh the grant first. */
  refreshed: boolean;
}

export interface ReadOptions {
  /** The token must stay valid at least this long (seconds); a shorter-lived one is refreshed first. */
  minValidSec?: number;
  /** Refresh even if the current token is still good (after a 401 from the resource server). */
  force?: boolean;
  /**
   * An operator's retry (`grantkeeper retry`, POST /v1/grants/:id/retry): the refresh is `forced`,
   * and for a failing client it is the probe, pause or not.
   */
  operator?: boolean;
}

export interface AccessTokenReaderDeps {
  grants: GrantRepository;
  refresher: GrantRefresher;
  /** Plans the worker's next job after an on-demand refresh. */
  scheduler: RefreshScheduler;
  /** Each read is a `grantkeeper.token_read` span; a refresh it needs is its child. */
  tracing: Tracing;
  logger: Logger;
  /** How long to wait for another holder's refresh before giving up (the lease length is plenty). */
  waitLimitMs: number;
  pollMs?: number;
  /** How long an answer waits for the next job to reach Redis (default PLAN_WAIT_MS). */
  planWaitMs?: number;
  now?: () => number;
}

/** Queueing the next job takes a millisecond or two when Redis is up; longer means it is not. */
const PLAN_WAIT_MS = 1000;
/**
 * A forced read this soon after a refresh answers from that refresh: a burst of callers that all
 * saw a 401 costs one token request, not one each (invariant 10).
 */
export const FORCE_COALESCE_MS = 10_000;

/**
 * A minimum every provider can meet, for callers that name none: a minute, or half the lifetime of
 * this grant's tokens when they live less than two minutes.
 */
export function defaultMinValidSec(accessLifetimeMs: number): number {
  return Math.min(60, Math.floor(accessLifetimeMs / 2000));
}

/**
 * Hands out access tokens, refreshing on demand under the same lease the worker uses, so however
 * many readers ask at once, one token request goes out per version. Readers in this process share
 * one in-flight refresh per grant; readers elsewhere wait for the lease holder's commit. The
 * provider is called only when that can help (invariant 10): never for a minimum no token of this
 * provider reaches, never inside a backoff.
 */
export class AccessTokenReader {
  private readonly inFlight = new Map<string, Promise<AccessToken>>();
  private readonly now: () => number;

  constructor(private readonly deps: AccessTokenReaderDeps) {
    this.now = deps.now ?? Date.now;
  }

  read(idOrLabel: string, options: ReadOptions = {}): Promise<AccessToken> {
    return this.traced((span) => this.lookUp(idOrLabel, options, span));
  }

  /** `read` for a caller that has just loaded the grant (the API, to check access): no second lookup. */
  readGrant(stored: StoredGrant, options: ReadOptions = {}): Promise<AccessToken> {
    return this.traced((span) => this.answer(stored, options, span));
  }

  /** One read, one span: where the answer came from, or why there was none (its reason, no text). */
  private async traced(read: (span: TraceSpan) => Promise<AccessToken>): Promise<AccessToken> {
    const span = this.deps.tracing.start(SPAN_NAMES.tokenRead);
    try {
      const token = await read(span);
      span.set({ outcome: 'ok', source: token.refreshed ? 'refresh' : 'store' });
      return token;
    } catch (err) {
      if (err instanceof TokenReadError) span.fail(err.code, { outcome: err.code });
      else span.fail('internal');
      throw err;
    } finally {
      span.end();
    }
  }

  private async lookUp(idOrLabel: string, options: ReadOptions, span: TraceSpan): Promise<AccessToken> {
    const stored = await this.deps.grants.find(idOrLabel);
    if (!stored) throw new TokenReadError('not_found', `no grant has the id or label "${idOrLabel}"`);
    return this.answer(stored, options, span);
  }

  private async answer(stored: StoredGrant, options: ReadOptions, span: TraceSpan): Promise<AccessToken> {
    const { grant } = stored;
    span.identify(grant);
    const minValidMs = Math.max(0, options.minValidSec ?? 0) * 1000;
    assertUsable(grant);
    if (minValidMs > grant.accessLifetimeMs) throw unsatisfiable(minValidMs, grant.accessLifetimeMs);
    const now = this.now();
    const force =
      options.force === true &&
      !(grant.lastRefreshedAt !== null && now - grant.lastRefreshedAt < FORCE_COALESCE_MS);
    if (!force && grant.accessExpiresAt - now >= minValidMs) return toAccessToken(stored, false);
    if (grant.state === 'failing' && grant.nextRefreshAt > now) {
      // Inside the worker's backoff (or a Retry-After): asking now cannot help and must not push it.
      throw new TokenReadError(
        'unavailable',
        `the provider did not issue a new token (${grant.lastError ?? 'it is failing'}); next attempt at ${new Date(grant.nextRefreshAt).toISOString()}`,
        { retryAt: grant.nextRefreshAt },
      );
    }
    const key = grant.id;
    const pending = this.inFlight.get(key);
    if (pending) {
      const shared = await pending;
      if (shared.expiresAt - this.now() >= minValidMs) return shared;
      return this.lookUp(grant.id, options, span);
    }
    // A forced read only needs a token newer than the one the caller saw.
    const promise = this.refreshUntilFresh(
      stored,
      minValidMs,
      span,
      options.operator ? 'forced' : 'on_demand',
      force ? grant.version : undefined,
    ).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }

  private async refreshUntilFresh(
    start: StoredGrant,
    minValidMs: number,
    span: TraceSpan,
    trigger: RefreshTrigger,
    staleVersion?: number,
  ): Promise<AccessToken> {
    const deadline = this.now() + this.deps.waitLimitMs;
    let current = start;
    for (;;) {
      const { grant } = current;
      assertUsable(grant);
      const fresh =
        (staleVersion === undefined || grant.version > staleVersion) &&
        grant.accessExpiresAt - this.now() >= minValidMs;
      if (fresh) return toAccessToken(current, grant.version !== start.grant.version);
      const refresh = span.child(SPAN_NAMES.refresh, { trigger });
      let done: StoredGrant | undefined;
      let result: RefreshResult;
      try {
        result = await this.deps.refresher.refresh(
          grant.id,
          grant.version,
          trigger,
          refresh,
          grant.clientRef,
        );
        done = await this.settle(result, refresh);
      } finally {
        refresh.end();
      }
      if (done) {
        if (done.grant.accessExpiresAt - this.now() < minValidMs) {
          throw unsatisfiable(minValidMs, done.grant.accessLifetimeMs);
        }
        return toAccessToken(done, true);
      }
      if (this.now() > deadline) {
        throw new TokenReadError(
          'unavailable',
          `grant ${grant.label} is being refreshed elsewhere; try again`,
        );
      }
      if (result.status === 'busy') await this.waitForMove(grant, Math.min(result.retryAt, deadline));
      current = await this.reload(grant.id);
    }
  }

  /** Returns the refreshed grant, throws for failures, or undefined to look again. */
  private async settle(result: RefreshResult, span: TraceSpan): Promise<StoredGrant | undefined> {
    switch (result.status) {
      case 'refreshed':
        await this.plan(result.grant, span);
        return result;
      case 'retrying':
        await this.plan(result.grant, span);
        throw new TokenReadError(
          'unavailable',
          `the provider did not issue a new token (${result.error.message}); next attempt at ${new Date(result.grant.nextRefreshAt).toISOString()}`,
          { retryAt: result.grant.nextRefreshAt },
        );
      case 'stopped':
      case 'broken':
      case 'conflict':
        assertUsable(result.grant);
        return undefined;
      case 'in_doubt':
        throw new TokenReadError(
          'unavailable',
          `an earlier refresh of this grant may have reached the provider without its answer reaching us; its refresh token is not sent again before ${new Date(result.retryAt).toISOString()}`,
          { retryAt: result.retryAt },
        );
      case 'paced':
        // Invariant 10: inside the client's pause or past its rate, the provider is not asked.
        throw new TokenReadError(
          'unavailable',
          pacedMessage(result.reason, new Date(result.retryAt).toISOString()),
          { retryAt: result.retryAt },
        );
      case 'deferred':
        throw new TokenReadError(
          'storage_unavailable',
          `${describeStorageFailure(result.cause)}, so no new token can be stored now; try again shortly`,
          { retryAt: result.retryAt },
        );
      default:
        return undefined;
    }
  }

  /**
   * The worker's job for the new plan; when Redis is out of reach the reconciler adds it later.
   * The queue connection holds commands until Redis is back instead of failing them, so the wait is
   * bounded: a reader whose token is committed is never held hostage by a Redis outage (the add
   * still lands once Redis returns, and the reconciler covers it otherwise).
   */
  private async plan(grant: Grant, span: TraceSpan): Promise<void> {
    // The schedule span ends when the job is queued, which may be after the answer (a Redis outage).
    const scheduled = inSpan(span.child(SPAN_NAMES.schedule), () => this.deps.scheduler.schedule([grant]));
    const queued = scheduled.then(
      () => true,
      (err: Error) => {
        this.deps.logger.warn(
          { grantId: grant.id, err: { message: err.message } },
          'could not queue the next refresh; the reconciler will',
        );
        return true;
      },
    );
    if ((await withTimeout(queued, this.deps.planWaitMs ?? PLAN_WAIT_MS)) === TIMED_OUT) {
      this.deps.logger.warn(
        { grantId: grant.id },
        'Redis is not answering: the next refresh is queued when it is back, or by the reconciler',
      );
    }
  }

  private async waitForMove(grant: Grant, until: number): Promise<void> {
    const pollMs = this.deps.pollMs ?? 50;
    while (this.now() < until) {
      await new Promise((r) => setTimeout(r, pollMs));
      const current = (await this.deps.grants.get(grant.id))?.grant;
      if (!current || current.version !== grant.version || current.leaseUntil === null) return;
    }
  }

  private async reload(id: string): Promise<StoredGrant> {
    const stored = await this.deps.grants.get(id);
    if (!stored) throw new TokenReadError('not_found', `grant ${id} was removed`);
    return stored;
  }
}

const STOPPED_BECAUSE: Record<Exclude<GrantState, 'active' | 'failing'>, string> = {
  needs_reconsent: 'the provider refused it: capture consent again (grantkeeper seed)',
  client_error: 'the provider refused its client: fix the client registration',
  broken: 'grantkeeper cannot open it or its client: see grantkeeper grant show',
};

function toAccessToken({ grant, tokens }: StoredGrant, refreshed: boolean): AccessToken {
  return {
    grantId: grant.id,
    label: grant.label,
    accessToken: tokens.accessToken(),
    tokenType: grant.tokenType ?? 'Bearer',
    expiresAt: grant.accessExpiresAt,
    refreshed,
  };
}

function assertUsable(grant: Grant): void {
  if (isLive(grant.state)) return;
  const state = grant.state as keyof typeof STOPPED_BECAUSE;
  throw new TokenReadError(state, `grant ${grant.label} is ${state}: ${STOPPED_BECAUSE[state]}`);
}

function unsatisfiable(minValidMs: number, lifetimeMs: number): TokenReadError {
  return new TokenReadError(
    'min_valid_unsatisfiable',
    `a token valid for ${Math.round(minValidMs / 1000)} s was asked for, but this provider's access tokens live ${Math.round(lifetimeMs / 1000)} s`,
  );
}

function pacedMessage(reason: Extract<RefreshResult, { status: 'paced' }>['reason'], until: string): string {
  switch (reason) {
    case 'rate':
      return `the client's rate limit is spent until ${until}; try again then`;
    case 'refused':
      return `the provider refused this grant's client credentials (the client is failing): fix the client (grantkeeper client add), then grantkeeper retry`;
    default:
      return `the provider is rate limiting this client (or failing): its refreshes wait until ${until}`;
  }
}
