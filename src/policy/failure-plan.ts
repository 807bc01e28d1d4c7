import { type BackoffPolicy, retryDelayMs } from './backoff.js';

/** What a failed token request tells us, as the policy needs it (no I/O objects, no secrets). */
export interface FailureFacts {
  kind: 'permanent' | 'transient';
  outcome: 'needs_reconsent' | 'client_error' | 'retry';
  status?: number;
  retryAfterMs?: number;
  /** Our own words, safe to store and show. */
  message: string;
  /** The provider may have acted on the request, but no usable answer came back. */
  answerLost: boolean;
  /** A 4xx without an RFC 6749 error body. */
  unexplained: boolean;
}

/** The earlier attempts of the current failure streak, newest first (what the event log holds). */
export interface PastAttempt {
  at: number;
  outcome: string;
  httpStatus: number | null;
  errorCode: string | null;
}

export interface UnexplainedRule {
  /** This many unexplained 4xx answers in a row, the current one included… */
  count: number;
  /** …the first at least this long ago, make the grant need a new consent. */
  spanMs: number;
}

/** Defaults: a real server (Glewlwyd) answers a spent or revoked refresh token with a bare 400. */
export const DEFAULT_UNEXPLAINED_RULE: UnexplainedRule = { count: 5, spanMs: 30 * 60_000 };

export interface FailureContext {
  /** Failures in a row before this one. */
  consecutiveFailures: number;
  /** Newest first; only read for unexplained answers. */
  history: readonly PastAttempt[];
  /** A replay of a possibly spent refresh token may revoke the grant (the provider preset says). */
  replayMayRevoke: boolean;
  /**
   * The grant stands on a user's consent (a refresh token). Without one (client credentials, JWT
   * bearer) no refusal can mean the account must consent again: it is the client's credentials.
   */
  consentBound: boolean;
  inDoubtGraceMs: number;
  backoff: BackoffPolicy;
  unexplained: UnexplainedRule;
  now: number;
}

export type FailurePlan =
  | { action: 'stop'; state: 'needs_reconsent' | 'client_error'; message: string }
  /** The answer was lost on a provider that may revoke on replay: wait the grace, keep the mark. */
  | { action: 'in_doubt'; nextRefreshAt: number; message: string }
  | { action: 'retry'; nextRefreshAt: number; delayMs: number; message: string };

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Decides what a failed refresh means for the grant (invariant 5): permanent errors stop it;
 * a lost answer on a provider that may revoke on replay waits a long grace (invariant 2); an
 * unexplained 4xx repeated over time becomes `needs_reconsent` with the evidence; anything else
 * retries with jittered exponential backoff, never sooner than Retry-After.
 */
export function planAfterFailure(
  facts: FailureFacts,
  ctx: FailureContext,
  random: () => number = Math.random,
): FailurePlan {
  if (facts.kind === 'permanent') {
    return {
      action: 'stop',
      state: facts.outcome === 'client_error' || !ctx.consentBound ? 'client_error' : 'needs_reconsent',
      message: facts.message,
    };
  }
  if (facts.answerLost && ctx.replayMayRevoke) {
    return {
      action: 'in_doubt',
      nextRefreshAt: ctx.now + ctx.inDoubtGraceMs,
      message:
        `${facts.message}; the request reached the provider, which may have rotated the refresh token: ` +
        `in doubt, the stored token is tried again after ${Math.round(ctx.inDoubtGraceMs / 1000)} s`,
    };
  }
  if (facts.unexplained) {
    const streak = unexplainedStreak(ctx.history);
    const count = streak.length + 1;
    const since = streak.at(-1)?.at ?? ctx.now;
    if (count >= ctx.unexplained.count && ctx.now - since >= ctx.unexplained.spanMs && !ctx.consentBound) {
      return {
        action: 'stop',
        state: 'client_error',
        message:
          `the token endpoint refused the client's requests ${count} times since ${iso(since)} with ` +
          `HTTP ${facts.status ?? '4xx'} and no OAuth error: check its credentials, key and allowed grants`,
      };
    }
    if (count >= ctx.unexplained.count && ctx.now - since >= ctx.unexplained.spanMs) {
      return {
        action: 'stop',
        state: 'needs_reconsent',
        message:
          `the token endpoint refused the refresh token ${count} times since ${iso(since)} with ` +
          `HTTP ${facts.status ?? '4xx'} and no OAuth error: it gives no reason, so the grant is taken ` +
          'as revoked or spent; capture consent again (grantkeeper seed)',
      };
    }
  }
  const delayMs = retryDelayMs(
    {
      consecutiveFailures: ctx.consecutiveFailures + 1,
      ...(facts.retryAfterMs === undefined ? {} : { retryAfterMs: facts.retryAfterMs }),
    },
    ctx.backoff,
    random,
  );
  return { action: 'retry', nextRefreshAt: ctx.now + delayMs, delayMs, message: facts.message };
}

/** The unbroken run of unexplained 4xx answers at the head of the history (newest first). */
export function unexplainedStreak(history: readonly PastAttempt[]): PastAttempt[] {
  const run: PastAttempt[] = [];
  for (const a of history) {
    if (a.outcome !== 'transient_error' || !isUnexplainedCode(a)) break;
    run.push(a);
  }
  return run;
}

function isUnexplainedCode(a: PastAttempt): boolean {
  return (
    a.httpStatus !== null &&
    a.httpStatus >= 400 &&
    a.httpStatus < 500 &&
    a.httpStatus !== 408 &&
    a.errorCode === `http_${a.httpStatus}`
  );
}
