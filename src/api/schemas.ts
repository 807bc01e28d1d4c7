import { z } from 'zod';
import { GRANT_KINDS, GRANT_MODES, GRANT_STATES, REFRESH_OUTCOMES } from '../grants/grant.js';

/**
 * Route schemas are zod; fastify gets their JSON Schema (for the OpenAPI document and fast response
 * serialisation) while validation itself runs the zod schema the JSON one was made from.
 */
const zodByJsonSchema = new WeakMap<object, z.ZodType>();

export function routeSchema(type: z.ZodType, io: 'input' | 'output' = 'input'): Record<string, unknown> {
  const json = z.toJSONSchema(type, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  zodByJsonSchema.set(json, type);
  return json;
}

export function zodFor(jsonSchema: unknown): z.ZodType | undefined {
  return typeof jsonSchema === 'object' && jsonSchema !== null ? zodByJsonSchema.get(jsonSchema) : undefined;
}

export const errorBody = z.object({
  error: z.string().describe('a stable machine-readable code'),
  message: z.string().describe('what went wrong, for people'),
});

/** The longest grant id or label a route accepts (labels are at most 128 characters). */
export const GRANT_REF_MAX = 200;

export const grantParams = z
  .object({ id: z.string().min(1).max(GRANT_REF_MAX).describe('grant id (or label)') })
  .strict();

const MIN_VALID_DESCRIPTION =
  'the token must stay valid at least this many seconds; a shorter-lived one is refreshed first';
const minValid = z.number().int().min(0).max(86_400);

export const tokenQuery = z
  .object({
    min_valid: z.coerce.number().pipe(minValid).default(0).describe(MIN_VALID_DESCRIPTION),
    // A forced refresh spends a refresh token: a GET (an <img> on any local port) must not cause one.
    force: z
      .literal('false', {
        error:
          'a forced refresh spends a refresh token, so it is a POST: POST /v1/grants/{id}/token {"force": true}',
      })
      .optional()
      .describe('only "false": a forced refresh is POST /v1/grants/{id}/token'),
  })
  .strict();

// No body at all (fastify hands it over as null) is a plain read, as the GET.
export const tokenBody = z.preprocess(
  (body) => body ?? {},
  z
    .object({
      min_valid: minValid.default(0).describe(MIN_VALID_DESCRIPTION),
      force: z
        .boolean()
        .default(false)
        .describe('refresh even if the current token is good (after a 401 from the resource server)'),
    })
    .strict(),
);

export const listQuery = z
  .object({
    events: z.coerce
      .number()
      .int()
      .min(0)
      .max(50)
      .default(0)
      .describe('include this many recent refresh attempts per grant'),
  })
  .strict();

export const modeBody = z.object({ mode: z.enum(GRANT_MODES) }).strict();

const isoTime = z.string().describe('ISO 8601 time');

export const refreshEventView = z.object({
  at: isoTime,
  trigger: z.string(),
  outcome: z.enum(REFRESH_OUTCOMES),
  duration_ms: z.number().nullable(),
  http_status: z.number().nullable(),
  error_code: z.string().nullable(),
  message: z.string().nullable(),
});

export const grantView = z.object({
  id: z.string(),
  label: z.string(),
  client: z.string().nullable(),
  provider: z.string().nullable(),
  state: z.enum(GRANT_STATES),
  /** Where its next token comes from: a refresh token, or the client's own request. */
  kind: z.enum(GRANT_KINDS),
  mode: z.enum(GRANT_MODES),
  version: z.number(),
  access_expires_at: isoTime,
  next_refresh_at: isoTime,
  refresh_token_used_at: isoTime,
  keepalive_deadline: isoTime.nullable(),
  in_doubt_since: isoTime
    .nullable()
    .describe(
      'a refresh request went out at this time and no answer settled it: the provider may have rotated',
    ),
  last_refreshed_at: isoTime.nullable(),
  consecutive_failures: z.number(),
  last_error: z.string().nullable(),
  last_error_at: isoTime.nullable(),
  created_at: isoTime,
  updated_at: isoTime,
  recent_events: z.array(refreshEventView).optional(),
});
export type GrantView = z.infer<typeof grantView>;

export const grantList = z.object({ grants: z.array(grantView), now: isoTime });

export const tokenView = z.object({
  grant_id: z.string(),
  access_token: z.string(),
  token_type: z.string(),
  expires_at: isoTime,
  expires_in: z.number().describe('seconds left, from the server clock'),
  refreshed: z.boolean().describe('this read refreshed the grant first'),
});
export type TokenView = z.infer<typeof tokenView>;

export const loginBody = z.object({ key: z.string().min(1).max(200) }).strict();
