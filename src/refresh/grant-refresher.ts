import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { SpanKind } from '@opentelemetry/api';
import { SealError } from '../crypto/sealer.js';
import { ClientConfigError } from '../errors/grantkeeper-error.js';
import { reachFaultPoint } from '../fault-injection/fault-points.js';
import {
  type Grant,
  type GrantKind,
  hasRefreshToken,
  isLive,
  type RefreshEvent,
  type StoredGrant,
} from '../grants/grant.js';
import type { ClientRepository, GrantRepository, OpenedClient } from '../grants/ports.js';
import { STORAGE_RETRY_MS, storageFailureOf } from '../grants/storage-error.js';
import { type Logger, unredacted } from '../log/logger.js';
import type { ProviderProfile } from '../oauth/providers.js';
import { type SendWindow, type TokenClient, UnusableTokenResponse } from '../oauth/token-client.js';
import { forServiceGrant, TokenEndpointError } from '../oauth/token-errors.js';
import type { TokenSet } from '../oauth/token-response.js';
import type { Admission } from '../pacing/client-pacer.js';
import { paceOutcome } from '../pacing/pace-policy.js';
import type { BackoffPolicy } from '../policy/backoff.js';
import { type FailurePlan, planAfterFailure, type UnexplainedRule } from '../policy/failure-plan.js';
import { issuedTokens, planAfterTokenResponse, refreshTokenEnd, timingFor } from '../policy/refresh-plan.js';
import type { RefreshTimingPolicy } from '../policy/refresh-timing.js';
import type { StorageGate } from '../store/storage-gate.js';
import { SPAN_NAMES, type SpanFacts, serverFacts } from '../telemetry/span-policy.js';
import { NO_SPAN, type TraceSpan } from '../telemetry/spans.js';
import { HeldCommit } from './held-commit.js';
import { nextTokenRequest } from './next-token.js';
import type { RefreshResult, RefreshTrigger } from './outcomes.js';
import type { RefreshAttempt, RefreshObserver } from './refresh-observer.js';
import type { RefreshPacing } from './refresh-pacing.js';

export interface GrantRefresherDeps {
  grants: GrantRepository;
  clients: ClientRepository;
  tokenClient: TokenClient;
  timing: RefreshTimingPolicy;
  backoff: BackoffPolicy;
  logger: Logger;
  /** Closed while the disk is full: no refresh may start whose answer could not be stored. */
  storage: StorageGate;
  /**
   * How long a claim is held. It must outlive the token request's timeout by a margin: the fence
   * refuses to send with less than the timeout left.
   */
  leaseMs: number;
  /** How long nobody sends a refresh token whose earlier request's answer was lost (invariant 2). */
  inDoubtGraceMs: number;
  unexplained: UnexplainedRule;
  /** Client-wide pacing shared by the replicas; without it every request goes at once. */
  pacing?: RefreshPacing;
  observers?: RefreshObserver[];
  now?: () => number;
}

/** Extra wait past another holder's lease, so the retry does not land a hair before it expires. */
const LEASE_SLACK_MS = 250;
/**
 * The fence wants this much lease beyond the request timeout: the statement itself, the first
 * write and timer granularity all come out of it.
 */
const FENCE_SLACK_MS = 100;
/** A late answer is read only this far inside the grace, clear of a takeover at its end. */
const GRACE_SAFETY_MS = 1000;

/** Where a claim attempt ended: a claimed row, or the answer for the caller. */
type ClaimOutcome = { claimed: StoredGrant } | { result: RefreshResult };

/**
 * The one place a grant's tokens are refreshed, for the worker and for on-demand readers alike:
 * claim the lease, fence it, ask the token endpoint, commit the answer, decide about a failure.
 */
export class GrantRefresher {
  private readonly now: () => number;
  private readonly ownerPrefix = randomBytes(4).toString('hex');
  private claims = 0;
  /** Grants this process has claimed and not yet settled. */
  private readonly active = new Set<string>();
  private readonly held: HeldCommit;
  /** For the success line only: its fields are ids and times, never a token. */
  private readonly auditLog: Logger;

  constructor(private readonly deps: GrantRefresherDeps) {
    this.now = deps.now ?? Date.now;
    this.auditLog = unredacted(deps.logger);
    this.held = new HeldCommit({
      logger: deps.logger,
      storage: deps.storage,
      keepLease: (grant, owner) => deps.grants.extendLease(grant.id, grant.version, owner, deps.leaseMs),
      now: this.now,
    });
  }

  /** The timing policy in force, for callers that plan a schedule the same way (consent capture). */
  get timing(): RefreshTimingPolicy {
    return this.deps.timing;
  }

  /** Grants whose new tokens this process holds in memory because the database refused them. */
  heldGrantIds(): string[] {
    return this.held.grantIds();
  }

  /**
   * One attempt. `span` is the caller's `grantkeeper.refresh` span: the claim, token request and
   * commit become its children and the outcome its attributes; the caller ends it (it also spans
   * the scheduling that follows).
   */
  async refresh(
    grantId: string,
    version: number,
    trigger: RefreshTrigger,
    span: TraceSpan = NO_SPAN,
    /** The grant's client when the caller knows it (the job names it): pacing then comes before the claim. */
    clientRef?: string,
  ): Promise<RefreshResult> {
    try {
      const result = await this.attempt(grantId, version, trigger, span, clientRef);
      const { errorCode, ...facts } = outcomeFacts(result);
      if (errorCode === undefined) span.set(facts);
      else span.fail(errorCode, facts);
      return result;
    } catch (err) {
      span.fail('internal');
      throw err;
    }
  }

  private async attempt(
    grantId: string,
    version: number,
    trigger: RefreshTrigger,
    span: TraceSpan,
    clientRef: string | undefined,
  ): Promise<RefreshResult> {
    const blockedUntil = this.deps.storage.blockedUntil();
    if (blockedUntil !== undefined) {
      return { status: 'deferred', retryAt: blockedUntil, cause: 'disk_full' };
    }
    // Our own lease may have run out under us (a long lock stalls the event loop, and BullMQ then
    // hands the same job out again): a grant this process is refreshing is never claimed twice.
    if (this.active.has(grantId)) return { status: 'busy', retryAt: this.now() + this.deps.leaseMs };
    const { pacing } = this.deps;
    // Paced before the claim when the client is known: a paced job then costs the store nothing.
    let admission: Admission | undefined = clientRef ? await pacing?.admit(clientRef, trigger) : undefined;
    if (admission?.kind === 'later') return paced(admission);
    const owner = `${this.ownerPrefix}.${++this.claims}`;
    const claimSpan = span.child(SPAN_NAMES.claim);
    let outcome: ClaimOutcome;
    try {
      outcome = await this.claim(grantId, version, owner);
      claimSpan.set({ outcome: 'result' in outcome ? outcome.result.status : 'claimed' });
    } catch (err) {
      claimSpan.fail(storageFailureOf(err) ?? 'internal');
      return this.deferForStorage(err);
    } finally {
      claimSpan.end();
    }
    if ('result' in outcome) return outcome.result;
    const { grant } = outcome.claimed;
    // A job queued before jobs named their client: paced now, and the claim given back if it waits.
    admission ??= await pacing?.admit(grant.clientRef, trigger);
    if (admission?.kind === 'later') {
      await this.deps.grants.releaseLease(grantId, owner, grant.leaseSentAt).catch(() => {});
      return paced(admission);
    }
    const refused = admission?.kind === 'refused' ? admission : undefined;
    const probe = admission?.kind === 'go' && admission.probe;
    span.identify(grant).set({ version: grant.version, attempt: grant.consecutiveFailures + 1 });
    this.active.add(grantId);
    const started = this.now();
    let client: OpenedClient | undefined;
    try {
      client = await this.deps.clients.openById(grant.clientRef);
      span.set({ provider: client?.profile.kind ?? 'unknown', ...(client ? { client: client.name } : {}) });
      const result = !client
        ? await this.markBroken(grant, owner, trigger, `its client ${grant.clientRef} no longer exists`)
        : refused
          ? await this.stopRefused(grant, owner, trigger, client, refused)
          : await this.refreshClaimed(outcome.claimed, client, owner, trigger, span, probe);
      this.notify(grant, client, trigger, this.now() - started, result);
      return result;
    } catch (err) {
      if (err instanceof SealError) {
        const result = await this.markBroken(
          grant,
          owner,
          trigger,
          `its sealed values cannot be opened: ${err.message}`,
        );
        this.notify(grant, client, trigger, this.now() - started, result);
        return result;
      }
      // Anything unexpected (a failure record the db refused): free the grant for the next attempt,
      // leaving any earlier in-doubt mark as it was. Received tokens never get here: they are held.
      try {
        await this.deps.grants.releaseLease(grantId, owner, grant.leaseSentAt);
      } catch {
        // The lease then runs out on its own.
      }
      return this.deferForStorage(err);
    } finally {
      this.active.delete(grantId);
    }
  }

  /**
   * Claims the lease, or says why not. A grant in doubt is claimed at once only where the provider
   * lets a lost answer's refresh token be replayed harmlessly (its preset says so).
   */
  private async claim(grantId: string, version: number, owner: string): Promise<ClaimOutcome> {
    const { grants, leaseMs, inDoubtGraceMs } = this.deps;
    const claimed = await grants.claim(grantId, version, owner, leaseMs, inDoubtGraceMs);
    if (claimed) return { claimed };
    const view = await grants.leaseView(grantId);
    if (!view || view.grant.version !== version || !isLive(view.grant.state)) {
      return { result: { status: 'stale' } };
    }
    const now = this.now();
    if (view.leaseRemainingMs !== null && view.leaseRemainingMs >= 0) {
      return { result: { status: 'busy', retryAt: now + view.leaseRemainingMs + LEASE_SLACK_MS } };
    }
    if (view.sentAgoMs !== null) {
      if (await this.replayIsHarmless(view.grant)) {
        const retried = await grants.claim(grantId, version, owner, leaseMs, 0);
        if (retried) return { claimed: retried };
      }
      return { result: { status: 'in_doubt', retryAt: now + Math.max(0, inDoubtGraceMs - view.sentAgoMs) } };
    }
    // Freed between our claim and our look: someone else is about to hold it, or just did.
    return { result: { status: 'busy', retryAt: now + LEASE_SLACK_MS } };
  }

  /** Whether this grant's provider lets a lost answer's refresh token be sent again at once. */
  private async replayIsHarmless(grant: Grant): Promise<boolean> {
    if (!hasRefreshToken(grant.kind)) return true;
    try {
      const client = await this.deps.clients.openById(grant.clientRef);
      return client !== undefined && !replayMayRevoke(client.profile, grant.kind);
    } catch {
      // A client that cannot be opened is found by the refresh itself; here, the safe side.
      return false;
    }
  }

  /** A storage failure before anything was sent becomes a deferral; anything else is a bug. */
  private deferForStorage(err: unknown): RefreshResult {
    const cause = storageFailureOf(err);
    if (!cause) throw err;
    if (cause === 'disk_full') this.deps.storage.reportOutOfSpace();
    return { status: 'deferred', retryAt: this.now() + STORAGE_RETRY_MS, cause };
  }

  private async refreshClaimed(
    claimed: StoredGrant,
    client: OpenedClient,
    owner: string,
    trigger: RefreshTrigger,
    span: TraceSpan,
    probe: boolean,
  ): Promise<RefreshResult> {
    const { grants, tokenClient, inDoubtGraceMs } = this.deps;
    const { grant } = claimed;
    const next = nextTokenRequest(tokenClient, client, claimed);
    reachFaultPoint('stop-after-claim');
    // The fence (invariant 2): the lease must still be ours with more than the request timeout
    // left, checked and marked sent in one statement immediately before the request is written
    // (only a rate slot's short wait comes between). The local deadlines below are counted from
    // before the statement, so they err early.
    const fencedAt = performance.now();
    let remainingMs: number | undefined;
    try {
      remainingMs = await grants.markSent(
        grant.id,
        grant.version,
        owner,
        tokenClient.timeoutMs + FENCE_SLACK_MS,
      );
    } catch (err) {
      await grants.releaseLease(grant.id, owner, grant.leaseSentAt).catch(() => {});
      return this.deferForStorage(err);
    }
    if (remainingMs === undefined) return this.leaseLost(grant, owner);
    // The client's rate slot, right before the send: a store write between the two (the fence) would
    // add its lock waits to the spread the provider sees. Its wait comes out of the request's own
    // time (the window below still ends where the fence allowed); turned away, nothing was sent.
    const slot = await this.deps.pacing?.slot(grant.clientRef, probe);
    if (slot?.kind === 'later') {
      await grants.releaseLease(grant.id, owner, grant.leaseSentAt).catch(() => {});
      return paced(slot);
    }
    const window: SendWindow = {
      abortAt: fencedAt + tokenClient.timeoutMs,
      // Nobody sends this grant's refresh token again before our lease ends, or, where a replay may
      // revoke it, before the in-doubt grace has passed: an answer that arrives until then is ours.
      protectedUntil:
        fencedAt +
        (replayMayRevoke(client.profile, grant.kind) ? inDoubtGraceMs - GRACE_SAFETY_MS : remainingMs),
    };
    const sentAt = this.now();
    const request = span.child(SPAN_NAMES.tokenRequest, {}, SpanKind.CLIENT);
    if (request.recording) {
      request.set({ httpMethod: 'POST', ...serverFacts(client.target.tokenEndpoint) });
    }
    let answer: { tokens: TokenSet } | { error: TokenEndpointError };
    try {
      answer = { tokens: await next({ window, onResponse: (httpStatus) => request.set({ httpStatus }) }) };
    } catch (err) {
      const error = hasRefreshToken(grant.kind) ? asTokenError(err) : forServiceGrant(asTokenError(err));
      request.fail(error.code, error.status === undefined ? {} : { httpStatus: error.status });
      answer = { error };
    } finally {
      request.end();
    }
    // A throttle is news for the client's other refreshes at once: its pause must reach them before
    // they send, not after this grant's commit (a 429 carries no token, so invariant 3 does not hold
    // it back). Every other outcome is reported after the commit, as the incidents expect.
    const failure = 'error' in answer ? answer.error : undefined;
    const early = paceOutcome(failure).kind === 'throttled';
    const reported = early ? this.deps.pacing?.settle(grant, probe, failure) : undefined;
    reported?.catch(() => {});
    const commitSpan = span.child(SPAN_NAMES.commit);
    let result: RefreshResult;
    try {
      result = await this.settleAnswer(grant, owner, trigger, client, answer, sentAt);
      commitSpan.set({ outcome: result.status });
    } catch (err) {
      commitSpan.fail(storageFailureOf(err) ?? 'internal');
      throw err;
    } finally {
      commitSpan.end();
    }
    const covered = early ? await reported : await this.deps.pacing?.settle(grant, probe, failure);
    return covered && result.status === 'stopped' ? { ...result, incident: true } : result;
  }

  /**
   * The client's credentials were refused for another grant and nothing has changed since: this
   * grant stops as `client_error` too, without spending a request on the same dead secret.
   */
  private async stopRefused(
    grant: Grant,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    refused: Extract<Admission, { kind: 'refused' }>,
  ): Promise<RefreshResult> {
    const message = `not sent: the provider refused client ${client.name}'s credentials (${refused.code}) since ${new Date(refused.since).toISOString()}; fix the client (grantkeeper client add), then grantkeeper retry`;
    const error = new TokenEndpointError({
      kind: 'permanent',
      outcome: 'client_error',
      code: refused.code,
      requestSent: false,
      message,
    });
    const stopped = await this.deps.grants.recordFailure(
      grant.id,
      grant.version,
      owner,
      { state: 'client_error', message },
      { at: this.now(), trigger, outcome: 'client_error', errorCode: refused.code, message },
    );
    if (!stopped) return { status: 'overtaken' };
    this.deps.logger.info(
      { grantId: grant.id, client: client.name, errorCode: refused.code },
      "grant stopped with its client's incident: no request sent",
    );
    return { status: 'stopped', grant: stopped, error, incident: true };
  }

  /** Stores what the token request ended with: new tokens, a salvaged rotation, or the failure. */
  private settleAnswer(
    grant: Grant,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    answer: { tokens: TokenSet } | { error: TokenEndpointError },
    sentAt: number,
  ): Promise<RefreshResult> {
    if ('tokens' in answer) return this.commit(grant, owner, trigger, client, answer.tokens, sentAt);
    const { error } = answer;
    if (error.code === 'not_sent') return this.leaseLost(grant, owner);
    if (error instanceof UnusableTokenResponse) {
      return this.storeSalvaged(grant, owner, trigger, client, error, sentAt);
    }
    return this.recordFailure(grant, owner, trigger, client, error, this.now() - sentAt);
  }

  /** The fence refused, or the send window closed: nothing was sent, nothing changed. */
  private async leaseLost(grant: Grant, owner: string): Promise<RefreshResult> {
    await this.deps.grants.releaseLease(grant.id, owner, grant.leaseSentAt);
    this.deps.logger.warn(
      { grantId: grant.id, version: grant.version },
      'refresh not sent: the lease ran out before the request could be written (the process stalled); retrying later',
    );
    return { status: 'lease_lost', retryAt: this.now() + LEASE_SLACK_MS };
  }

  private async commit(
    grant: Grant,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    tokens: TokenSet,
    sentAt: number,
  ): Promise<RefreshResult> {
    const now = this.now();
    const plan = planAfterTokenResponse(
      tokens,
      sentAt,
      now,
      timingFor(client.profile, grant.kind),
      this.deps.timing,
      grant.mode,
    );
    const refreshExpires = hasRefreshToken(grant.kind) ? refreshTokenEnd(tokens, sentAt) : undefined;
    const event: RefreshEvent = {
      at: now,
      trigger,
      outcome: 'refreshed',
      durationMs: now - sentAt,
      rotated: tokens.refreshToken !== undefined,
      message: plan.defaultedLifetime
        ? 'no expires_in in the response: provider default lifetime used'
        : null,
    };
    const committed = await this.held.store(grant, owner, () =>
      this.deps.grants.commitRefresh(
        grant.id,
        grant.version,
        {
          ...issuedTokens(tokens, plan),
          ...(tokens.refreshToken === undefined ? {} : { refreshToken: tokens.refreshToken }),
          ...(refreshExpires ? { refreshExpires } : {}),
        },
        event,
      ),
    );
    if (!committed) {
      this.deps.logger.warn(
        { grantId: grant.id, version: grant.version },
        'refresh answered after another holder had already moved the grant on; its newer tokens stand',
      );
      return { status: 'overtaken' };
    }
    await this.noteSecretInUse(client, tokens.clientSecretUsed, now);
    if (committed.conflict) {
      this.deps.logger.error(
        { grantId: grant.id, version: committed.grant.version, state: committed.grant.state },
        'new tokens arrived for a grant that was stopped meanwhile: stored, the grant stays stopped; check it (grantkeeper grant show)',
      );
      return { status: 'conflict', grant: committed.grant };
    }
    this.auditLog.info(
      {
        grantId: grant.id,
        version: committed.grant.version,
        trigger,
        rotated: tokens.refreshToken !== undefined,
        expiresAt: new Date(committed.grant.accessExpiresAt).toISOString(),
        nextRefreshAt: new Date(committed.grant.nextRefreshAt).toISOString(),
      },
      'grant refreshed',
    );
    return { status: 'refreshed', grant: committed.grant, tokens: committed.tokens };
  }

  /**
   * During a secret rotation, records which secret the provider accepted when that changed, so
   * `client show` says whether the old one may be retired. A store that refuses it loses only this
   * note (the next refresh tries again), never the refresh.
   */
  private async noteSecretInUse(client: OpenedClient, used: TokenSet['clientSecretUsed'], at: number) {
    if (used === undefined || used === client.secretInUse) return;
    const { logger } = this.deps;
    if (used === 'previous') {
      logger.warn(
        { clientId: client.id, client: client.name },
        'the newest client secret was refused (invalid_client); the previous one worked: check the new secret before retiring the old',
      );
    } else {
      logger.info({ clientId: client.id, client: client.name }, 'the newest client secret works');
    }
    await this.deps.clients
      .recordSecretInUse(client.id, used, at)
      .catch((err: Error) =>
        logger.warn(
          { clientId: client.id, err: { message: err.message } },
          'could not record which client secret works',
        ),
      );
  }

  /**
   * An unusable answer that still carried a valid rotated refresh token: the one we sent is spent,
   * so the new one is stored (held like any received token) and the attempt counts as a failure.
   */
  private async storeSalvaged(
    grant: Grant,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    error: UnusableTokenResponse,
    sentAt: number,
  ): Promise<RefreshResult> {
    const now = this.now();
    const plan = await this.planFailure(grant, error, client, now);
    const nextRefreshAt = plan.action === 'stop' ? now : plan.nextRefreshAt;
    const stored = await this.held.store(grant, owner, () =>
      this.deps.grants.commitRotationOnly(
        grant.id,
        grant.version,
        owner,
        { refreshToken: error.salvagedRefreshToken(), refreshTokenUsedAt: sentAt },
        { nextRefreshAt, message: error.message },
        { ...failureEvent(error, trigger, now, now - sentAt), outcome: 'transient_error', rotated: true },
      ),
    );
    if (!stored) return { status: 'overtaken' };
    this.deps.logger.warn(
      { grantId: grant.id, provider: client.profile.kind, errorCode: error.code, status: error.status },
      'token endpoint answered with an unusable access token; its rotated refresh token was stored, will retry',
    );
    return { status: 'retrying', grant: stored, error, inDoubt: false };
  }

  private async recordFailure(
    grant: Grant,
    owner: string,
    trigger: RefreshTrigger,
    client: OpenedClient,
    error: TokenEndpointError,
    durationMs: number,
  ): Promise<RefreshResult> {
    const { grants, logger } = this.deps;
    const now = this.now();
    const event = failureEvent(error, trigger, now, durationMs);
    // A spent token may only mean that someone else rotated first (invariant 4): ask the db.
    if (error.spentToken) {
      const current = (await grants.get(grant.id))?.grant;
      if (current && current.version !== grant.version) {
        await grants.recordEvent(grant.id, grant.version, { ...event, outcome: 'overtaken' });
        // Usually a race we lost; if nobody here rotated it, a family revocation is the other reading.
        logger.warn(
          {
            grantId: grant.id,
            version: grant.version,
            currentVersion: current.version,
            errorCode: error.code,
          },
          'refresh token refused as spent, but the grant had moved on: another holder rotated it first',
        );
        return { status: 'overtaken' };
      }
    }
    const plan = await this.planFailure(grant, error, client, now);
    const log = {
      grantId: grant.id,
      provider: client.profile.kind,
      errorCode: error.code,
      status: error.status,
    };
    if (plan.action === 'stop') {
      const stopped = await grants.recordFailure(
        grant.id,
        grant.version,
        owner,
        { state: plan.state, message: plan.message },
        { ...event, outcome: plan.state, message: plan.message },
      );
      if (!stopped) return { status: 'overtaken' };
      logger.error(
        { ...log, state: plan.state },
        plan.state === 'needs_reconsent'
          ? 'grant refused by the provider: it needs a new consent (grantkeeper seed)'
          : 'client rejected by the provider: check the client id and secret',
      );
      return { status: 'stopped', grant: stopped, error };
    }
    const inDoubt = plan.action === 'in_doubt';
    const failing = await grants.recordFailure(
      grant.id,
      grant.version,
      owner,
      { state: 'failing', nextRefreshAt: plan.nextRefreshAt, message: plan.message, inDoubt },
      { ...event, outcome: inDoubt ? 'in_doubt' : 'transient_error', message: plan.message },
    );
    if (!failing) return { status: 'overtaken' };
    if (inDoubt) {
      logger.error(
        {
          ...log,
          failures: failing.consecutiveFailures,
          retryAt: new Date(plan.nextRefreshAt).toISOString(),
        },
        'refresh sent but its answer was lost: the grant is in doubt (the provider may have rotated); nobody retries before the grace ends',
      );
    } else {
      logger.warn(
        { ...log, failures: failing.consecutiveFailures, retryInMs: plan.nextRefreshAt - now },
        'refresh failed; will retry',
      );
    }
    return { status: 'retrying', grant: failing, error, inDoubt };
  }

  private async planFailure(
    grant: Grant,
    error: TokenEndpointError,
    client: OpenedClient,
    now: number,
  ): Promise<FailurePlan> {
    // The event log is read only for the rare unexplained answer.
    const history = error.unexplained
      ? await this.deps.grants.recentEvents(grant.id, this.deps.unexplained.count)
      : [];
    return planAfterFailure(
      {
        kind: error.kind,
        outcome: error.outcome,
        ...(error.status === undefined ? {} : { status: error.status }),
        ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
        message: error.message,
        answerLost: error.answerLost,
        unexplained: error.unexplained,
      },
      {
        consecutiveFailures: grant.consecutiveFailures,
        history,
        replayMayRevoke: replayMayRevoke(client.profile, grant.kind),
        consentBound: hasRefreshToken(grant.kind),
        inDoubtGraceMs: this.deps.inDoubtGraceMs,
        backoff: this.deps.backoff,
        unexplained: this.deps.unexplained,
        now,
      },
    );
  }

  /** Nothing grantkeeper can do with this grant until an operator acts: say so, loudly, once. */
  private async markBroken(
    grant: Grant,
    owner: string,
    trigger: RefreshTrigger,
    why: string,
  ): Promise<RefreshResult> {
    const now = this.now();
    const message = `grantkeeper cannot use this grant: ${why}`;
    const broken = await this.deps.grants.recordFailure(
      grant.id,
      grant.version,
      owner,
      // Nothing was sent: an earlier in-doubt mark stays as it was.
      { state: 'broken', message, inDoubt: grant.leaseSentAt !== null },
      { at: now, trigger, outcome: 'broken', message },
    );
    if (!broken) return { status: 'overtaken' };
    this.deps.logger.error({ grantId: grant.id, state: 'broken' }, message);
    return { status: 'broken', grant: broken };
  }

  private notify(
    grant: Grant,
    client: OpenedClient | undefined,
    trigger: RefreshTrigger,
    durationMs: number,
    result: RefreshResult,
  ): void {
    const { observers } = this.deps;
    if (!observers?.length) return;
    const attempt: RefreshAttempt = {
      grantId: grant.id,
      provider: client?.profile.kind ?? 'unknown',
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
}

/**
 * Replaying a refresh token whose request's answer was lost may revoke the grant on this provider.
 * A grant without one asks afresh each time: a lost answer costs nothing but the request.
 */
export function replayMayRevoke(
  profile: Pick<ProviderProfile, 'rotatesRefreshTokens' | 'oldRefreshTokensStayValid'>,
  kind: GrantKind,
): boolean {
  return hasRefreshToken(kind) && profile.rotatesRefreshTokens && !profile.oldRefreshTokensStayValid;
}

function paced(later: { retryAt: number; reason: 'paused' | 'probing' | 'refused' | 'rate' }): RefreshResult {
  return { status: 'paced', retryAt: later.retryAt, reason: later.reason };
}

/** What a span says about a result: its status, and for a failure the code and HTTP status. */
function outcomeFacts(result: RefreshResult): SpanFacts {
  switch (result.status) {
    case 'retrying':
    case 'stopped':
      return {
        outcome: result.status,
        errorCode: result.error.code,
        ...(result.error.status === undefined ? {} : { httpStatus: result.error.status }),
      };
    case 'broken':
      return { outcome: result.status, errorCode: 'broken' };
    default:
      return { outcome: result.status };
  }
}

function failureEvent(error: TokenEndpointError, trigger: RefreshTrigger, at: number, durationMs: number) {
  return {
    at,
    trigger,
    durationMs,
    httpStatus: error.status ?? null,
    errorCode: error.code,
    message: error.message,
  };
}

/**
 * A configuration problem (no secret, an http endpoint off loopback) will not fix itself: it stops
 * the grant as a client error. Anything else unexpected is retried like a transient failure.
 */
function asTokenError(err: unknown): TokenEndpointError {
  if (err instanceof TokenEndpointError) return err;
  if (err instanceof ClientConfigError) {
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
