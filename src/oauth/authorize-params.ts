import { z } from 'zod';

/** Parameters the authorization-code flow sets itself; a client's own would undo PKCE, state or nonce. */
export const FLOW_OWNED_PARAMS = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'nonce',
  'code_challenge',
  'code_challenge_method',
  'request',
  'request_uri',
] as const;

const MAX_PARAMS = 20;

/** Compared case-insensitively: some servers read parameter names that way. */
const isFlowOwned = (name: string) => (FLOW_OWNED_PARAMS as readonly string[]).includes(name.toLowerCase());

export const authorizeParamNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'authorization parameter names are letters, digits, "_", "." or "-"')
  .refine((name) => !isFlowOwned(name), {
    error: (issue) =>
      `the authorization parameter ${String(issue.input)} is set by grantkeeper itself and cannot be configured`,
  });

// No control, format (bidi, zero-width) or separator characters: the value ends up in a URL people read.
export const authorizeParamValueSchema = z
  .string()
  .regex(
    /^[^\p{C}\p{Zl}\p{Zp}]{1,2048}$/u,
    'authorization parameter values are printable text, 1 to 2048 characters',
  );

/** A client's extra authorization-request parameters (`domain_hint`, `login_hint`, `hd`, `audience` …). */
export const authorizeParamsSchema = z
  .record(z.string(), authorizeParamValueSchema)
  // Names are checked here rather than as the record's key schema, so each error names its rule.
  .superRefine((params, ctx) => {
    const names = Object.keys(params);
    if (names.length > MAX_PARAMS)
      ctx.addIssue({ code: 'custom', message: `at most ${MAX_PARAMS} authorization parameters` });
    for (const name of names) {
      const checked = authorizeParamNameSchema.safeParse(name);
      if (!checked.success)
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: checked.error.issues[0]?.message ?? 'invalid name',
        });
    }
  });

export type AuthorizeParams = z.infer<typeof authorizeParamsSchema>;

/** One `name=value` flag value added to those already given; a repeated name is a mistake, not an override. */
export function addAuthorizeParam(raw: string, previous: AuthorizeParams = {}): AuthorizeParams {
  const eq = raw.indexOf('=');
  if (eq <= 0) throw new Error('expected name=value, e.g. login_hint=ops@example.com');
  const name = authorizeParamNameSchema.safeParse(raw.slice(0, eq));
  if (!name.success) throw new Error(name.error.issues[0]?.message ?? 'invalid parameter name');
  const value = authorizeParamValueSchema.safeParse(raw.slice(eq + 1));
  if (!value.success) throw new Error(`${name.data}: ${value.error.issues[0]?.message ?? 'invalid value'}`);
  if (Object.hasOwn(previous, name.data)) throw new Error(`${name.data} is given twice`);
  const next = { ...previous, [name.data]: value.data };
  if (Object.keys(next).length > MAX_PARAMS)
    throw new Error(`at most ${MAX_PARAMS} authorization parameters`);
  return next;
}
