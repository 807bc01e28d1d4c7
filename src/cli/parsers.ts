import { InvalidArgumentError } from 'commander';
import type { z } from 'zod';
import { z as zod } from 'zod';
import { configClientSchema } from '../config/config-schema.js';
import { labelProblem } from '../consent/grant-label.js';

/** A commander argument parser from a zod schema: a bad value is a usage error (exit 2) naming the rule. */
export function parseWith<T>(schema: z.ZodType<T>): (value: string) => T {
  return (value) => {
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    throw new InvalidArgumentError(parsed.error.issues.map((i) => i.message).join('; '));
  };
}

/** A whole number within bounds, from a flag value (`what` names the unit in the error). */
export const wholeNumberArg = (min: number, max: number, what = 'number') =>
  parseWith(
    zod
      .string()
      .regex(/^\d+$/, `expected a whole ${what}`)
      .transform(Number)
      .pipe(zod.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`)),
  );

export const secondsArg = (min: number, max: number) => wholeNumberArg(min, max, 'number of seconds');

export const clientNameArg = parseWith(configClientSchema.shape.name);

/** A space- or comma-separated scope list; each scope is a printable token (RFC 6749 §3.3). */
export const scopesArg = parseWith(
  zod
    .string()
    .transform((s) => s.split(/[\s,]+/).filter(Boolean))
    .pipe(
      zod
        .array(
          zod
            .string()
            .regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'scopes are printable words without quotes or backslashes'),
        )
        .min(1, 'expected at least one scope'),
    ),
);

/** A grant's id or label as typed by an operator. */
export const grantRefArg = parseWith(
  zod.string().regex(/^[A-Za-z0-9@_][A-Za-z0-9._@+-]{0,127}$/, 'expected a grant id or label'),
);

/** A label for a new grant: a grant ref that is not shaped like a grant id. */
export function labelArg(value: string): string {
  const problem = labelProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

const DURATION_UNITS_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A span like `30m`, `24h` or `7d`, in milliseconds, within bounds. */
export const durationArg = (minMs: number, maxMs: number) =>
  parseWith(
    zod
      .string()
      .regex(/^\d{1,6}[mhd]$/, 'expected a number and a unit: m, h or d (e.g. 30m, 24h, 7d)')
      .transform(
        (s) => Number(s.slice(0, -1)) * DURATION_UNITS_MS[s.slice(-1) as keyof typeof DURATION_UNITS_MS],
      )
      .pipe(
        zod
          .number()
          .min(minMs, `must be at least ${minMs / 60_000} minutes`)
          .max(maxMs, `must be at most ${maxMs / 86_400_000} days`),
      ),
  );
