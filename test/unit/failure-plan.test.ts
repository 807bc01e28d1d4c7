import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BACKOFF } from '../../src/policy/backoff.js';
import {
  DEFAULT_UNEXPLAINED_RULE,
  type FailureContext,
  type FailureFacts,
  type PastAttempt,
  planAfterFailure,
  unexplainedStreak,
} from '../../src/policy/failure-plan.js';

const NOW = 1_800_000_000_000;
const MIN = 60_000;

const facts = (over: Partial<FailureFacts> = {}): FailureFacts => ({
  kind: 'transient',
  outcome: 'retry',
  message: 'token endpoint error http_400 (HTTP 400)',
  answerLost: false,
  unexplained: false,
  ...over,
});

const ctx = (over: Partial<FailureContext> = {}): FailureContext => ({
  consecutiveFailures: 0,
  history: [],
  replayMayRevoke: true,
  consentBound: true,
  inDoubtGraceMs: 10 * MIN,
  backoff: DEFAULT_BACKOFF,
  unexplained: DEFAULT_UNEXPLAINED_RULE,
  now: NOW,
  ...over,
});

const bare400 = (at: number): PastAttempt => ({
  at,
  outcome: 'transient_error',
  httpStatus: 400,
  errorCode: 'http_400',
});

describe('planAfterFailure', () => {
  it('stops on permanent errors, whatever else is true', () => {
    expect(
      planAfterFailure(facts({ kind: 'permanent', outcome: 'client_error', answerLost: true }), ctx()),
    ).toEqual({
      action: 'stop',
      state: 'client_error',
      message: facts().message,
    });
    expect(planAfterFailure(facts({ kind: 'permanent', outcome: 'needs_reconsent' }), ctx())).toMatchObject({
      action: 'stop',
      state: 'needs_reconsent',
    });
  });

  it('holds a lost answer in doubt for the whole grace where a replay may revoke, and retries where it may not', () => {
    expect(planAfterFailure(facts({ answerLost: true }), ctx())).toMatchObject({
      action: 'in_doubt',
      nextRefreshAt: NOW + 10 * MIN,
      message: expect.stringMatching(/in doubt.*600 s/),
    });
    expect(planAfterFailure(facts({ answerLost: true }), ctx({ replayMayRevoke: false }))).toMatchObject({
      action: 'retry',
    });
  });

  it('turns an unexplained 4xx repeated over the span into needs_reconsent, with the evidence', () => {
    const history = [
      bare400(NOW - 10 * MIN),
      bare400(NOW - 20 * MIN),
      bare400(NOW - 25 * MIN),
      bare400(NOW - 31 * MIN),
    ];
    const plan = planAfterFailure(facts({ unexplained: true, status: 400 }), ctx({ history }));
    expect(plan).toMatchObject({ action: 'stop', state: 'needs_reconsent' });
    expect(plan.message).toContain('5 times since');
    expect(plan.message).toContain(new Date(NOW - 31 * MIN).toISOString());
  });

  it('keeps retrying an unexplained 4xx until both the count and the span are reached', () => {
    const tooFew = [bare400(NOW - 40 * MIN), bare400(NOW - 35 * MIN), bare400(NOW - 32 * MIN)];
    expect(planAfterFailure(facts({ unexplained: true }), ctx({ history: tooFew })).action).toBe('retry');
    const tooSoon = [1, 2, 3, 4, 5, 6].map((m) => bare400(NOW - m * MIN));
    expect(planAfterFailure(facts({ unexplained: true }), ctx({ history: tooSoon })).action).toBe('retry');
    // A success (or another kind of failure) in between breaks the streak.
    const broken = [
      bare400(NOW - MIN),
      { ...bare400(NOW - 2 * MIN), outcome: 'refreshed' },
      bare400(NOW - 40 * MIN),
    ];
    expect(unexplainedStreak(broken)).toHaveLength(1);
    const withOAuthError = [{ ...bare400(NOW - MIN), errorCode: 'invalid_request' }];
    expect(unexplainedStreak(withOAuthError)).toHaveLength(0);
  });

  it('never retries sooner than the backoff allows or Retry-After asks, and never later than the cap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.option(fc.integer({ min: 0, max: 10 * 3600_000 }), { nil: undefined }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (failures, retryAfterMs, r) => {
          const plan = planAfterFailure(
            facts(retryAfterMs === undefined ? {} : { retryAfterMs }),
            ctx({ consecutiveFailures: failures }),
            () => r,
          );
          expect(plan.action).toBe('retry');
          if (plan.action !== 'retry') return;
          const delay = plan.nextRefreshAt - NOW;
          expect(delay).toBeGreaterThanOrEqual(
            Math.min(DEFAULT_BACKOFF.baseMs / 2, DEFAULT_BACKOFF.maxMs / 2),
          );
          if (retryAfterMs !== undefined) {
            expect(delay).toBeGreaterThanOrEqual(Math.min(retryAfterMs, DEFAULT_BACKOFF.maxRetryAfterMs));
          }
          expect(delay).toBeLessThanOrEqual(Math.max(DEFAULT_BACKOFF.maxMs, DEFAULT_BACKOFF.maxRetryAfterMs));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('is total: every combination of facts yields exactly one plan with a future time where it has one', () => {
    fc.assert(
      fc.property(
        fc.record({
          kind: fc.constantFrom('permanent', 'transient'),
          outcome: fc.constantFrom('needs_reconsent', 'client_error', 'retry'),
          answerLost: fc.boolean(),
          unexplained: fc.boolean(),
          status: fc.integer({ min: 100, max: 599 }),
        }),
        fc.boolean(),
        fc.array(fc.integer({ min: 0, max: 120 }), { maxLength: 8 }),
        (f, revoke, agesMin) => {
          const plan = planAfterFailure(
            facts(f as Partial<FailureFacts>),
            ctx({ replayMayRevoke: revoke, history: agesMin.map((m) => bare400(NOW - m * MIN)) }),
          );
          if (f.kind === 'permanent') expect(plan.action).toBe('stop');
          if (plan.action !== 'stop') expect(plan.nextRefreshAt).toBeGreaterThan(NOW);
          if (f.kind === 'transient' && f.answerLost && revoke) expect(plan.action).toBe('in_doubt');
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('planAfterFailure for grants without a refresh token (client credentials, JWT bearer)', () => {
  const service = (over: Partial<FailureContext> = {}) =>
    ctx({ consentBound: false, replayMayRevoke: false, ...over });

  it('never needs a new consent: a permanent refusal is a client error', () => {
    for (const outcome of ['needs_reconsent', 'client_error'] as const) {
      expect(planAfterFailure(facts({ kind: 'permanent', outcome }), service())).toMatchObject({
        action: 'stop',
        state: 'client_error',
      });
    }
  });

  it('turns a long streak of unexplained 4xx answers into a client error, not a re-consent', () => {
    const history = [1, 2, 3, 4].map((n) => bare400(NOW - n * 10 * MIN));
    const plan = planAfterFailure(facts({ status: 400, unexplained: true }), service({ history }));
    expect(plan).toMatchObject({ action: 'stop', state: 'client_error' });
    expect(plan.message).toMatch(/refused the client's requests 5 times/);
  });

  it('retries a lost answer at once with backoff: there is no refresh token a replay could spend', () => {
    const plan = planAfterFailure(facts({ answerLost: true }), service());
    expect(plan.action).toBe('retry');
  });
});
