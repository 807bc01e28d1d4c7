import { z } from 'zod';
import { GRANT_KINDS, GRANT_MODES, GRANT_STATES, REFRESH_OUTCOMES } from '../grants/grant.js';
import { grantCursor } from './views/grant-cursor.js';

/**
 * Route schemas are zod, handed to fastify as they are (fastify-type-provider-zod): validation
 * runs them, handlers get their parsed types, responses are encoded through them and the OpenAPI
 * document is made from them.
 */
export const errorBody = z.object({
  error: z.string().describe('a stable machine-readable code'),
  message: z.string().describe('what went wrong, for people'),
});

/** The error answers a route documents: each `{ error, message }`. */
export function errorResponses<S extends number>(...statuses: S[]): Record<S, typeof errorBody> {
  return Object.fromEntries(statuses.map((s) => [s, errorBody])) as Record<S, typeof errorBody>;
}

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

/** The most grants one page of GET /v1/grants holds; also its size when `limit` is left out. */
export const GRANT_PAGE_MAX = 1000;

export const listQuery = z
  .object({
    events: z.coerce
      .number()
      .int()
      .min(0)
      .max(50)
      .default(0)
      .describe('include this many recent refresh attempts per grant'),
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(GRANT_PAGE_MAX)
      .default(GRANT_PAGE_MAX)
      .describe('at most this many grants; the answer’s `next` fetches the following page'),
    after: grantCursor.optional().describe('the `next` of the previous page'),
    q: z.string().max(128).optional().describe('only grants whose label contains this (any case)'),
    client: z.string().max(128).optional().describe('only grants of the client with this name'),
    state: z.enum(GRANT_STATES).optional().describe('only grants in this state'),
  })
  .strict();

export const modeBody = z.object({ mode: z.enum(GRANT_MODES) }).strict();

const isoTime = z.string().describe('ISO 8601 time');

export const refreshEventView = z.object({
  at: isoTime,
  trigger: z.string(),
  outcome: z.enum(REFRESH_OUTCOMES),
  version: z.number().describe('the grant version the attempt started from'),
  duration_ms: z.number().nullable(),
  http_status: z.number().nullable(),
  error_code: z.string().nullable(),
  message: z.string().nullable(),
  rotated: z
    .boolean()
    .nullable()
    .describe('whether the provider issued a new refresh token (null: not a token response)'),
});

export const grantView = z.object({
  id: z.string(),
  label: z.string(),
  client: z.string().nullable(),
  provider: z.string().nullable(),
  subject: z.string().nullable().describe("the provider's account id, when the consent named one"),
  state: z.enum(GRANT_STATES),
  /** Where its next token comes from: a refresh token, or the client's own request. */
  kind: z.enum(GRANT_KINDS),
  mode: z.enum(GRANT_MODES),
  version: z.number(),
  scope: z.string().nullable().describe('the scope the provider granted'),
  access_expires_at: isoTime,
  next_refresh_at: isoTime,
  refresh_token_used_at: isoTime,
  keepalive_deadline: isoTime.nullable(),
  renewable_until: isoTime
    .nullable()
    .describe("the refresh token's hard end, which no refresh extends; null: none known"),
  renewable_until_reason: z.string().nullable().describe('who set that end'),
  needs_consent_by: isoTime
    .nullable()
    .describe('the earlier of the hard end and the idle deadline: past it only a new consent helps'),
  needs_consent_by_reason: z.string().nullable(),
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

export const grantList = z.object({
  grants: z.array(grantView).describe('ordered by label, then id'),
  next: z.string().nullable().describe('pass as `after` for the next page; null: this was the last'),
  now: isoTime,
});

const perHour = z.array(z.number()).describe('one value per hour, oldest first');
const stateCounts = z.array(z.object({ state: z.enum(GRANT_STATES), count: z.number() }));

export const fleetView = z.object({
  now: isoTime,
  hour_ms: z.number(),
  ahead_from: isoTime.describe('start of the first hour of `planned` and `deadlines` (this hour)'),
  behind_from: isoTime.describe('start of the first hour of `outcomes` (23 hours before this one)'),
  total: z.number(),
  by_state: stateCounts,
  by_client: z.array(
    z.object({
      client: z.string(),
      provider: z.string().nullable(),
      total: z.number(),
      by_state: stateCounts,
      degraded: z
        .enum(['throttled', 'failures', 'client_error'])
        .nullable()
        .describe(
          'why the client is degraded (its refreshes wait for one probe) or failing (client_error: its credentials were refused); null: neither',
        ),
    }),
  ),
  planned: z.object({
    overdue: z.number().describe('live grants whose planned refresh is already due'),
    per_hour: perHour,
  }),
  deadlines: z
    .object({ per_hour: perHour, within_24h: z.number(), within_7d: z.number() })
    .describe(
      'keep-alive deadlines of live grants (last use of the refresh token + the provider’s idle limit); passed ones count as within',
    ),
  outcomes: z.array(
    z.object({
      client: z.string(),
      by_outcome: z.array(z.object({ outcome: z.enum(REFRESH_OUTCOMES), count: z.number() })),
      refreshed: perHour,
      failed: perHour.describe('attempts that did not refresh: errors, refusals, in doubt'),
      avg_ms: z.array(z.number().nullable()).describe('token-endpoint latency per hour'),
      max_ms: z.array(z.number().nullable()),
    }),
  ),
});
export type FleetView = z.infer<typeof fleetView>;

export const clientView = z.object({
  id: z.string(),
  name: z.string(),
  provider: z.string(),
  rate_limit: z
    .object({ requests_per_second: z.number(), burst: z.number() })
    .nullable()
    .describe("the client's token-endpoint budget shared by every replica; null: none"),
  condition: z.object({
    state: z
      .enum(['ok', 'degraded', 'failing'])
      .describe(
        'degraded: paused after a 429 or Retry-After, or its breaker is open; one probe at a time. failing: the provider refused its credentials; its grants stop as client_error without a request each',
      ),
    reason: z.enum(['throttled', 'failures', 'client_error']).nullable(),
    error_code: z.string().nullable().describe('while failing: the provider’s error (invalid_client…)'),
    degraded_since: isoTime.nullable().describe('when it became degraded or failing'),
    paused_until: isoTime.nullable().describe('no request before this; then one probe decides'),
    ramp_until: isoTime
      .nullable()
      .describe('after a recovery its rate limit ramps back to full until this; null: at full rate'),
  }),
});
export type ClientView = z.infer<typeof clientView>;

export const clientList = z.object({ clients: z.array(clientView), now: isoTime });

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
