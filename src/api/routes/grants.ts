import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { listGrants } from '../../grants/actions/list-grants.js';
import { refreshNow } from '../../grants/actions/refresh-now.js';
import { retryGrant } from '../../grants/actions/retry.js';
import { setGrantMode } from '../../grants/actions/set-mode.js';
import type { Grant, StoredGrant } from '../../grants/grant.js';
import { STORAGE_RETRY_MS } from '../../grants/storage-error.js';
import { type AccessToken, TokenReadError } from '../../refresh/access-token-reader.js';
import type { RefreshService } from '../../service/refresh-service.js';
import type { StoreContext } from '../../service/store-context.js';
import { allows } from '../auth/api-key-authenticator.js';
import { principalOf, requireAdmin } from '../auth/authentication.js';
import {
  errorResponses,
  grantList,
  grantParams,
  grantView,
  listQuery,
  modeBody,
  tokenBody,
  tokenQuery,
  tokenView,
} from '../schemas.js';
import { encodeCursor } from '../views/grant-cursor.js';
import { toGrantView } from '../views/grant-view.js';

/** What a grant route's handler needs of its request: the caller and the grant it names. */
type GrantRequest = Pick<FastifyRequest, 'principal'> & { params: z.infer<typeof grantParams> };

export interface GrantRouteDeps {
  app: StoreContext;
  engine: RefreshService['engine'];
}

const tags = ['grants'];
const security = [{ apiKey: [] }];
const TOKEN_DESCRIPTION =
  'One refresh per grant version however many callers ask at once (the worker’s lease). ' +
  '409: the grant needs re-consent or its client is misconfigured; 422: no token from this provider lives ' +
  'that long; 503 with Retry-After: the provider is failing or another process holds the refresh.';

/** The /v1 routes, in a scope that has authenticated the caller: reads for every key, writes for admins. */
export function registerGrantRoutes(parent: FastifyInstance, { app, engine }: GrantRouteDeps): void {
  const scope = parent.withTypeProvider<ZodTypeProvider>();
  /**
   * A reader gets 403 for every grant it may not use, known or not, so it cannot probe which labels
   * exist; an admin gets 404 for an unknown grant.
   */
  const resolveGrant = async (req: GrantRequest): Promise<StoredGrant> => {
    const principal = principalOf(req);
    const stored = await app.grants.find(req.params.id);
    if (principal.grantIds !== null && (!stored || !allows(principal, stored.grant.id))) {
      throw new GrantkeeperError('forbidden', 'this API key may not use that grant');
    }
    if (!stored) throw new GrantkeeperError('not_found', 'no grant has that id or label');
    return stored;
  };

  const view = async (grant: Grant, events?: number) =>
    toGrantView(
      grant,
      await app.clients.get(grant.clientRef),
      events ? await app.grants.recentEvents(grant.id, events) : undefined,
    );

  /** The grant as it is now (after an action), or as it was when it is gone meanwhile. */
  const current = async (grant: Grant) => (await app.grants.get(grant.id))?.grant ?? grant;

  scope.get(
    '/v1/grants',
    {
      schema: {
        tags,
        security,
        summary: 'List the grants this key may use, a page at a time, filtered by label, client or state',
        querystring: listQuery,
        response: { 200: grantList, ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const { events, limit, after, q, client, state } = req.query;
      const principal = principalOf(req);
      const { listed, more } = await listGrants(app, {
        grantIds: principal.grantIds === null ? null : [...principal.grantIds],
        labelContains: q,
        clientName: client,
        state,
        after,
        limit,
        events,
      });
      const last = listed[listed.length - 1];
      return {
        grants: listed.map((l) => toGrantView(l.grant, l.client, l.events)),
        next: more && last ? encodeCursor(last.grant) : null,
        now: new Date().toISOString(),
      };
    },
  );

  scope.get(
    '/v1/grants/:id',
    {
      schema: {
        tags,
        security,
        summary: 'One grant: state, times, failures and its last 20 refresh attempts (never a token)',
        params: grantParams,
        response: { 200: grantView, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => view((await resolveGrant(req)).grant, 20),
  );

  const answerToken = async (req: GrantRequest, options: { minValidSec: number; force: boolean }) => {
    const stored = await resolveGrant(req);
    const token = await answered(stored.grant, () => engine.reader.readGrant(stored, options));
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
    200: tokenView,
    ...errorResponses(400, 401, 403, 404, 409, 422, 503),
  };

  scope.get(
    '/v1/grants/:id/token',
    {
      schema: {
        tags,
        security,
        summary: 'An access token valid for at least min_valid seconds, refreshed on demand when needed',
        description: TOKEN_DESCRIPTION,
        params: grantParams,
        querystring: tokenQuery,
        response: tokenResponses,
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const { min_valid } = req.query;
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
        params: grantParams,
        body: tokenBody,
        response: tokenResponses,
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store');
      return answerToken(req, { minValidSec: req.body.min_valid, force: req.body.force });
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
        params: grantParams,
        response: { 200: grantView, ...errorResponses(400, 401, 403, 404, 409, 503) },
      },
    },
    async (req) => {
      const stored = await resolveGrant(req);
      await answered(stored.grant, () => refreshNow(engine.actions, stored));
      return view(await current(stored.grant), 20);
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
          'Retry now, as grantkeeper retry does: a stopped grant (needs_reconsent, client_error, broken) is revived as failing and refreshed at once; answers the outcome (admin keys)',
        params: grantParams,
        response: { 200: grantView, ...errorResponses(400, 401, 403, 404, 409, 422, 503) },
      },
    },
    async (req) => {
      const stored = await resolveGrant(req);
      const outcome = await retryGrant(engine.actions, stored);
      if (!outcome) throw new GrantkeeperError('not_found', 'no grant has that id or label');
      if (!outcome.ok) throw toApiError(outcome.error, outcome.grant);
      return view(outcome.grant, 20);
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
        params: grantParams,
        body: modeBody,
        response: { 200: grantView, ...errorResponses(400, 401, 403, 404, 503) },
      },
    },
    async (req) => {
      const { mode } = req.body;
      return view(await setGrantMode(engine.actions, (await resolveGrant(req)).grant, mode), 20);
    },
  );

  /** Runs a token read; its errors become statuses with messages of our own. */
  async function answered(grant: Grant, read: () => Promise<AccessToken>): Promise<AccessToken> {
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof TokenReadError)) throw err;
      throw toApiError(err, await current(grant));
    }
  }

  /** The reader's failure, worded for the API: its messages never name a label (a label names an account). */
  function toApiError(err: TokenReadError, grant: Grant): GrantkeeperError {
    switch (err.code) {
      case 'not_found':
        return new GrantkeeperError('not_found', 'no grant has that id or label');
      case 'needs_reconsent':
      case 'client_error':
      case 'broken':
        return unusable(grant);
      case 'min_valid_unsatisfiable':
        return err;
      case 'storage_unavailable':
        return new GrantkeeperError('storage_unavailable', err.message, {
          retryAt: err.retryAt ?? Date.now() + STORAGE_RETRY_MS,
        });
      case 'unavailable':
        return new GrantkeeperError(
          'unavailable',
          err.retryAt
            ? `the provider did not issue a new token; the next attempt is at ${new Date(err.retryAt).toISOString()}`
            : 'the grant is being refreshed by another process; try again',
          { retryAt: err.retryAt ?? Date.now() + engine.leaseMs },
        );
    }
  }
}

function unusable(grant: Grant): GrantkeeperError {
  return new GrantkeeperError(
    grant.state === 'needs_reconsent' || grant.state === 'client_error' ? grant.state : 'broken',
    grant.state === 'needs_reconsent'
      ? `grant ${grant.id} was refused by the provider: capture consent again (grantkeeper seed)`
      : `grant ${grant.id} is ${grant.state}: fix its client registration, then capture consent again`,
  );
}
