import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type FailureContext,
  type FailureFacts,
  type PastAttempt,
  planAfterFailure,
} from '../../src/policy/failure-plan.js';

const RUNS = { numRuns: 2000 };
const NOW = Date.UTC(2026, 11, 3);

const facts: fc.Arbitrary<FailureFacts> = fc.record({
  kind: fc.constantFrom('permanent', 'transient'),
  outcome: fc.constantFrom('needs_reconsent', 'client_error', 'retry'),
  status: fc.option(fc.integer({ min: 400, max: 599 }), { nil: undefined }),
  retryAfterMs: fc.option(fc.integer({ min: 0, max: 10 * 86_400_000 }), { nil: undefined }),
  message: fc.string({ maxLength: 40 }),
  answerLost: fc.boolean(),
  unexplained: fc.boolean(),
});

const attempt: fc.Arbitrary<PastAttempt> = fc
  .record({
    ago: fc.integer({ min: 0, max: 7 * 86_400_000 }),
    status: fc.constantFrom(400, 401, 403, 408, 429, 500),
    outcome: fc.constantFrom('transient_error', 'refreshed'),
  })
  .map(({ ago, status, outcome }) => ({
    at: NOW - ago,
    outcome,
    httpStatus: status,
    errorCode: `http_${status}`,
  }));

const context: fc.Arbitrary<FailureContext> = fc.record({
  consecutiveFailures: fc.integer({ min: 0, max: 100 }),
  history: fc.array(attempt, { maxLength: 8 }).map((h) => h.sort((a, b) => b.at - a.at)),
  replayMayRevoke: fc.boolean(),
  consentBound: fc.boolean(),
  inDoubtGraceMs: fc.integer({ min: 0, max: 86_400_000 }),
  backoff: fc.record({
    baseMs: fc.integer({ min: 0, max: 60_000 }),
    maxMs: fc.integer({ min: 0, max: 3_600_000 }),
    maxRetryAfterMs: fc.integer({ min: 0, max: 86_400_000 }),
  }),
  unexplained: fc.record({
    count: fc.integer({ min: 1, max: 10 }),
    spanMs: fc.integer({ min: 0, max: 86_400_000 }),
  }),
  now: fc.constant(NOW),
});

const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

describe('planAfterFailure (invariants 2 and 5)', () => {
  it('stops every permanent failure, and only a consent-bound grant ever needs a new consent', () => {
    fc.assert(
      fc.property(facts, context, random, (f, ctx, r) => {
        const plan = planAfterFailure(f, ctx, () => r);
        if (f.kind === 'permanent') expect(plan.action).toBe('stop');
        if (plan.action === 'stop' && plan.state === 'needs_reconsent') expect(ctx.consentBound).toBe(true);
      }),
      RUNS,
    );
  });

  it('never stops a transient failure unless unexplained refusals have run long enough', () => {
    fc.assert(
      fc.property(facts, context, random, (f, ctx, r) => {
        const plan = planAfterFailure({ ...f, kind: 'transient' }, ctx, () => r);
        if (plan.action !== 'stop') return;
        expect(f.unexplained).toBe(true);
        expect(f.answerLost && ctx.replayMayRevoke).toBe(false);
      }),
      RUNS,
    );
  });

  it('holds a lost answer on a provider that revokes on replay for the whole grace, never less', () => {
    fc.assert(
      fc.property(facts, context, random, (f, ctx, r) => {
        const plan = planAfterFailure({ ...f, kind: 'transient', answerLost: true }, ctx, () => r);
        if (ctx.replayMayRevoke) expect(plan).toMatchObject({ nextRefreshAt: NOW + ctx.inDoubtGraceMs });
      }),
      RUNS,
    );
  });

  it('retries in the future, no sooner than Retry-After (capped), no later than the larger of both caps', () => {
    fc.assert(
      fc.property(facts, context, random, (f, ctx, r) => {
        const plan = planAfterFailure({ ...f, kind: 'transient', unexplained: false }, ctx, () => r);
        if (plan.action !== 'retry') return;
        expect(plan.nextRefreshAt).toBe(NOW + plan.delayMs);
        expect(plan.delayMs).toBeGreaterThanOrEqual(0);
        const retryAfter = Math.min(f.retryAfterMs ?? 0, ctx.backoff.maxRetryAfterMs);
        if (f.retryAfterMs && f.retryAfterMs > 0) expect(plan.delayMs).toBeGreaterThanOrEqual(retryAfter);
        expect(plan.delayMs).toBeLessThanOrEqual(Math.max(ctx.backoff.maxMs, Math.ceil(retryAfter)));
      }),
      RUNS,
    );
  });
});
