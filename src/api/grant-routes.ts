import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { GrantRow } from '../../db/schema.js';
import { TokenReadError } from '../refresh/access-token-reader.js';
import type { AppContext } from '../service/app-context.js';
import { setGrantMode } from '../service/grant-mode.js';
import type { RefreshService } from '../service/refresh-service.js';
import { STORAGE_RETRY_MS } from '../store/storage-errors.js';
import { ApiError, retryAfter } from './api-error.js';
import { allows, type Principal } from './auth.js';
import { requireAdmin } from './authenticate.js';
import { toGrantView } from './grant-views.js';
import {
  errorBody,
  grantList,
  grantParams,
  grantView,
  listQuery,
  modeBody,
  routeSchema,
  tokenBody,
  tokenQuery,
  tokenView,
} from './schemas.js';

export interface GrantRouteDeps {
  app: AppContext;
  engine: RefreshService['engine'];
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, routeSchema(errorBody, 'output')]));

const tags = ['grants'];
const security = [{ apiKey: [] }];
const TOKEN_DESCRIPTION =
  'One refresh per grant version however many callers ask at once (the worker’s lease). ' +
  '409: the grant needs re-consent or its client is misconfigured; 422: no token from this provider lives ' +
  'that long; 503 with Retry-After: the provider is failing or another process holds the refresh.';

/** The /v1 routes, in a scope that has authenticated the caller: reads for every key, writes for admins. */
export function registerGrantRoutes(scope: FastifyInstance, { app, engine }: GrantRouteDeps): void {
  /**
   * A reader gets 403 for every grant it may not use, known or not, so it cannot probe which labels
   * exist; an admin gets 404 for an unknown grant.
   */
  const resolveGrant = (req: FastifyRequest): GrantRow => {
    const principal = req.principal as Principal;
    const grant = app.grants.find((req.params as z.infer<typeof grantParams>).id);
    if (principal.grantIds !== null && (!grant || !allows(principal, grant.id))) {
      throw new ApiError(403, 'forbidden', 'this API key may not use that grant');
    }
    if (!grant) throw new ApiError(404, 'not_found', 'no grant has that id or label');
    return grant;
  };

  const view = (grant: GrantRow, events?: number) =>
    toGrantView(
      grant,
      app.clients.get(grant.clientRef),
      events ? app.grants.recentEvents(grant.id, events) : undefined,
    );

  scope.get(
    '/v1/grants',
    {
      schema: {
        tags,
        security,
        summary: 'List the grants this key may use',
        querystring: routeSchema(listQuery),
        response: { 200: routeSchema(grantList, 'output'), ...errors(400, 401) },
      },
    },
    async (req) => {
      const { events } = req.query as z.infer<typeof listQuery>;
      const principal = req.principal as Principal;
      const clients = new Map(app.clients.list().map((c) => [c.id, c]));
      const grants = app.grants
        .list()
        .filter((g) => allows(principal, g.id))
        .map((g) =>
          toGrantView(
            g,
            clients.get(g.clientRef),
            events ? app.grants.recentEvents(g.id, events) : undefined,
          ),
        );
      return { grants, now: new Date().toISOString() };
    },
  );

  scope.get(
    '/v1/grants/:id',
    {
      schema: {
        tags,
        security,
        summary: 'One grant: state, times, failures and its last 20 refresh attempts (never a token)',
        params: routeSchema(grantParams),
        response: { 200: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404) },
      },
    },
    async (req) => view(resolveGrant(req), 20),
  );

  const answerToken = async (req: FastifyRequest, options: { minValidSec: number; force: boolean }) => {
    const token = await readToken(resolveGrant(req), options);
    return {
      grant_id: token.grantId,
      access_token: token.accessToken,
      token_type: token.tokenType,
      expires_at: new Date(token.expiresAt).toISOString(),
      expires_in: Math.max(0, Math.floor((token.expiresAt - Date.now()) / 1000)),
      refreshed: token.refreshed,
    };
  };
  const tokenResponses = {
    200: routeSchema(tokenView, 'output'),
    ...errors(400, 401, 403, 404, 409, 422, 503),
  };

  scope.get(
    '/v1/grants/:id/token',
    {
      schema: {
        tags,
        security,
        summary: 'An access token valid for at least min_valid seconds, refreshed on demand when needed',
        description: TOKEN_DESCRIPTION,
        params: routeSchema(grantParams),
        querystring: routeSchema(tokenQuery),
        response: tokenResponses,
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const { min_valid } = req.query as z.infer<typeof tokenQuery>;
      return answerToken(req, { minValidSec: min_valid, force: false });
    },
  );

  scope.post(
    '/v1/grants/:id/token',
    {
      schema: {
        tags,
        security,
        summary: 'The same read, and the only way to force a refresh (after a 401 from the resource server)',
        description: `${TOKEN_DESCRIPTION} A forced refresh spends the refresh token, so it is never a GET.`,
        params: routeSchema(grantParams),
        body: routeSchema(tokenBody),
        response: tokenResponses,
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const body = req.body as z.infer<typeof tokenBody>;
      return answerToken(req, { minValidSec: body.min_valid, force: body.force });
    },
  );

  scope.post(
    '/v1/grants/:id/refresh',
    {
      onRequest: requireAdmin,
      schema: {
        tags,
        security,
        summary: 'Refresh now and wait for the outcome (admin keys)',
        params: routeSchema(grantParams),
        response: { 200: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404, 409, 503) },
      },
    },
    async (req) => {
      const grant = resolveGrant(req);
      await readToken(grant, { force: true });
      return view(app.grants.get(grant.id) ?? grant, 20);
    },
  );

  scope.post(
    '/v1/grants/:id/retry',
    {
      onRequest: requireAdmin,
      schema: {
        tags,
        security,
        summary:
          'Retry now through the worker (202): a live grant becomes due, a stopped one (needs_reconsent, client_error) is tried again as failing (admin keys)',
        params: routeSchema(grantParams),
        response: { 202: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (req, reply) => {
      const grant = resolveGrant(req);
      // The same revival as `grantkeeper retry`: after fixing a client, its stopped grants retry.
      const due = app.grants.reviveForRetry(grant.id, Date.now());
      if (!due) throw new ApiError(404, 'not_found', 'no grant has that id or label');
      // Without Redis the reconciler queues it later; the db already says it is due.
      await engine.scheduler
        .schedule([due])
        .catch((err: Error) =>
          req.log.warn({ grantId: grant.id, err: { message: err.message } }, 'could not queue the retry'),
        );
      return reply.code(202).send(view(due, 20));
    },
  );

  scope.put(
    '/v1/grants/:id/mode',
    {
      onRequest: requireAdmin,
      schema: {
        tags,
        security,
        summary:
          'Switch between eager refreshing and keepalive (refresh on demand, keep the grant alive) (admin keys)',
        params: routeSchema(grantParams),
        body: routeSchema(modeBody),
        response: { 200: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404, 503) },
      },
    },
    async (req) => {
      const { mode } = req.body as z.infer<typeof modeBody>;
      return view(await setGrantMode(app, engine, resolveGrant(req), mode), 20);
    },
  );

  /** Reads through the shared reader; its errors become statuses with messages of our own. */
  async function readToken(grant: GrantRow, options: { minValidSec?: number; force?: boolean }) {
    try {
      return await engine.reader.readGrant(grant, options);
    } catch (err) {
      if (!(err instanceof TokenReadError)) throw err;
      const current = app.grants.get(grant.id) ?? grant;
      switch (err.reason) {
        case 'not_found':
          throw new ApiError(404, 'not_found', 'no grant has that id or label');
        case 'unusable':
          throw unusable(current);
        case 'unsatisfiable':
          throw new ApiError(422, 'min_valid_unsatisfiable', err.message);
        case 'storage_unavailable':
          throw new ApiError(
            503,
            'storage_unavailable',
            err.message,
            retryAfter(err.retryAt ?? Date.now() + STORAGE_RETRY_MS),
          );
        case 'unavailable': {
          const retryAt = err.retryAt ?? Date.now() + engine.leaseMs;
          throw new ApiError(
            503,
            'unavailable',
            err.retryAt
              ? `the provider did not issue a new token; the next attempt is at ${new Date(retryAt).toISOString()}`
              : 'the grant is being refreshed by another process; try again',
            retryAfter(retryAt),
          );
        }
      }
    }
  }
}

function unusable(grant: GrantRow): ApiError {
  return new ApiError(
    409,
    grant.state,
    grant.state === 'needs_reconsent'
      ? `grant ${grant.id} was refused by the provider: capture consent again (grantkeeper seed)`
      : `grant ${grant.id} is ${grant.state}: fix its client registration, then capture consent again`,
  );
}
