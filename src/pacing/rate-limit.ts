import { z } from 'zod';

/** A client's token-endpoint budget, shared by every replica: a steady rate and a burst on top. */
export interface RateLimit {
  requestsPerSecond: number;
  /** Requests that may go at once after a quiet spell; 1 spaces every request evenly. */
  burst: number;
}

export const rateLimitSchema = z
  .object({
    requestsPerSecond: z.number().positive().max(100_000),
    burst: z.number().int().min(1).max(10_000),
  })
  .strict();

/** `50/s` as the config file and `client add --rate` take it. */
export const rateTextSchema = z.string().transform((text, ctx) => {
  const perSecond = parseRate(text);
  if (perSecond === undefined) {
    ctx.addIssue({ code: 'custom', message: 'expected requests per time, e.g. 50/s, 3000/min or 10000/h' });
    return z.NEVER;
  }
  return perSecond;
});

/** A client's limit from its `rate` and `burst` settings; undefined without a rate. */
export function rateLimitOf(
  requestsPerSecond: number | undefined,
  burst: number | undefined,
): RateLimit | undefined {
  return requestsPerSecond === undefined ? undefined : { requestsPerSecond, burst: burst ?? 1 };
}

const UNIT_SECONDS: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600 };

/** `50/s`, `3000/min`, `10000/h` as requests per second; undefined when it is not one of those. */
export function parseRate(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|sec|m|min|h)\s*$/i.exec(text);
  if (!m) return undefined;
  const perSecond = Number(m[1]) / (UNIT_SECONDS[(m[2] ?? '').toLowerCase()] ?? Number.NaN);
  return perSecond > 0 && perSecond <= 100_000 ? perSecond : undefined;
}

/**
 * A request is spaced this much longer than the exact interval. What a provider counts is arrivals:
 * slots k·T apart, each sent d_k later, land at most (1000 + spread of d) / T in any second, so
 * this headroom absorbs 150 ms of spread between the slot and the provider's clock (an event loop
 * held by a synchronous store write, the network). 2 % and then 5 % each let a 21st request into
 * one second at 20/s with two workers under a full test run; 10 % let 51 into the busiest sliding
 * second at 50/s with two bench workers at 256 in flight (`npm run bench -- --scenarios rate-limit`).
 */
export const RATE_HEADROOM = 0.15;

/**
 * GCRA's two numbers for a limit: the emission interval, and how far ahead of it a burst may run.
 * At most `burst + requestsPerSecond - 1` requests then land in any one second, `requestsPerSecond`
 * with the default burst of 1.
 */
export function gcraParams(limit: RateLimit): { intervalMs: number; toleranceMs: number } {
  const intervalMs = (1000 / limit.requestsPerSecond) * (1 + RATE_HEADROOM);
  return { intervalMs, toleranceMs: (limit.burst - 1) * intervalMs };
}

export function describeRate(limit: RateLimit): string {
  const rate = Number.isInteger(limit.requestsPerSecond)
    ? `${limit.requestsPerSecond}/s`
    : `${Math.round(limit.requestsPerSecond * 60)}/min`;
  return limit.burst > 1 ? `${rate}, burst ${limit.burst}` : rate;
}
