import { randomBytes } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import fastifyCookie from '@fastify/cookie';
import fastifySwagger from '@fastify/swagger';
import type { Queue, Worker } from 'bullmq';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Redis } from 'ioredis';
import type { z } from 'zod';
import type { GrantRow } from '../../db/schema.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { TokenReadError } from '../refresh/access-token-reader.js';
import type { AppContext } from '../service/app-context.js';
import { setGrantMode } from '../service/grant-mode.js';
import type { RefreshService } from '../service/refresh-service.js';
import { describeStorageFailure, STORAGE_RETRY_MS, storageFailureOf } from '../store/storage-errors.js';
import { type ApiKeyAuthenticator, allows, type Principal } from './auth.js';
import { toGrantView } from './grant-views.js';
import { grantsPageCsp, renderGrantsPage, renderLoginPage } from './grants-page.js';
import {
  errorBody,
  grantList,
  grantParams,
  grantView,
  listQuery,
  loginBody,
  modeBody,
  routeSchema,
  tokenQuery,
  tokenView,
  zodFor,
} from './schemas.js';

export const SESSION_COOKIE = 'grantkeeper_key';
const READY_TIMEOUT_MS = 1000;

export interface ApiDeps {
  app: AppContext;
  engine: RefreshService['engine'];
  connection: Redis;
  /** The refresh worker, when this process runs one: readiness then requires it running. */
  worker?: Worker;
  /** Queues shown on the dashboard. */
  queues: Queue[];
  metrics: Metrics;
  authenticator: ApiKeyAuthenticator;
  logger: Logger;
}

/** An error the API answers with its own status and a message safe to show (no label, no token). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((s) => [s, routeSchema(errorBody, 'output')]));

export async function buildApiServer(deps: ApiDeps): Promise<FastifyInstance> {
  const { app, engine, logger } = deps;
  const server = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request log lines would dominate the token route's cost; failures are logged below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024,
  });
  server.setValidatorCompiler(({ schema }) => {
    const type = zodFor(schema);
    if (!type) throw new Error('route schema without a zod source');
    return (data: unknown) => {
      const parsed = type.safeParse(data);
      return parsed.success
        ? { value: parsed.data }
        : { error: new ApiError(400, 'bad_request', describe(parsed.error)) };
    };
  });
  server.setErrorHandler(
    (err: Error & { statusCode?: number; code?: string; validationContext?: string }, req, reply) => {
      if (err instanceof ApiError) {
        return reply
          .code(err.statusCode)
          .headers(err.headers)
          .send({ error: err.code, message: err.message });
      }
      if (err.code === 'FST_ERR_VALIDATION' || err.validationContext) {
        return reply
          .code(400)
          .send({ error: 'bad_request', message: `${err.validationContext ?? 'request'}: ${err.message}` });
      }
      // A write the db refused (disk full, locked past the busy timeout): worth retrying, not a bug.
      const storage = storageFailureOf(err);
      if (storage) {
        req.log.warn({ route: req.routeOptions.url, cause: storage }, 'database refused a write');
        return reply
          .code(503)
          .headers(retryAfter(Date.now() + STORAGE_RETRY_MS))
          .send({ error: 'storage_unavailable', message: describeStorageFailure(storage) });
      }
      const status = err.statusCode ?? 500;
      if (status < 500) {
        // Fastify's own client errors (bad JSON, wrong content type, body too large).
        return reply.code(status).send({ error: 'bad_request', message: err.message });
      }
      req.log.error(
        { err: { name: err.name, message: err.message }, route: req.routeOptions.url },
        'request failed',
      );
      return reply.code(500).send({ error: 'internal', message: 'internal error' });
    },
  );
  server.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }),
  );
  // The login form posts urlencoded; parsed here so no extra plugin is needed.
  server.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
  );

  // No parsing hook: only the session fallback and the page read the cookie (sessionKey), so the
  // bearer-authenticated token route skips a hook per request.
  await server.register(fastifyCookie, { hook: false });
  const sessionKey = (req: FastifyRequest): string | undefined => {
    const header = req.headers.cookie;
    return header ? server.parseCookie(header)[SESSION_COOKIE] : undefined;
  };
  await server.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'grantkeeper',
        version: '1',
        description:
          'Fresh OAuth access tokens for the grants grantkeeper keeps alive. Authenticate with `Authorization: Bearer gk_…` (grantkeeper apikey create).',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
    },
    hideUntagged: true,
  });

  // Answers itself rather than throwing: @bull-board's routes have an error handler of their own.
  const authenticate = async (req: FastifyRequest, reply: FastifyReply) => {
    const header = req.headers.authorization;
    const presented = header?.startsWith('Bearer ') ? header.slice(7).trim() : sessionKey(req);
    const principal = deps.authenticator.authenticate(presented);
    if (!principal) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: 'unauthorized', message: 'a valid API key is required (Authorization: Bearer gk_…)' });
    }
    req.principal = principal;
  };

  /**
   * A key limited to some grants gets 403 for every other reference, known or not, so it cannot
   * probe which labels exist; an unlimited key gets 404 for an unknown grant.
   */
  const resolveGrant = (req: FastifyRequest, idOrLabel: string): GrantRow => {
    const principal = req.principal as Principal;
    const grant = app.grants.find(idOrLabel);
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

  server.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  server.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const checks = {
      db: probe(() => {
        app.store.sqlite.prepare('select 1').get();
      }),
      redis: probe(() => deps.connection.ping()),
      worker: deps.worker
        ? probe(() => {
            if (!deps.worker?.isRunning()) throw new Error('not running');
          })
        : Promise.resolve('not_started' as const),
      // Not a failure: stored tokens are still served; only refreshes wait for space.
      storage: Promise.resolve(deps.engine.storage.paused ? ('disk_full' as const) : ('ok' as const)),
    };
    const results = Object.fromEntries(
      await Promise.all(Object.entries(checks).map(async ([k, v]) => [k, await v] as const)),
    );
    const ready = Object.values(results).every((r) => r !== 'failed');
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks: results });
  });

  server.get('/openapi.json', { schema: { hide: true } }, async () => server.swagger());

  server.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
  );

  // The grants page authenticates itself: without a session it shows the sign-in form.
  server.get('/', { schema: { hide: true } }, async (req, reply) => {
    const nonce = randomBytes(16).toString('base64');
    reply
      .header('content-security-policy', grantsPageCsp(nonce))
      .header('cache-control', 'no-store')
      .type('text/html');
    const queryKey = (req.query as { key?: unknown }).key;
    if (typeof queryKey === 'string') return signIn(reply, queryKey, nonce);
    const signedIn = deps.authenticator.authenticate(sessionKey(req));
    return signedIn ? renderGrantsPage(nonce) : reply.code(401).send(renderLoginPage(nonce, false));
  });

  server.post('/login', { schema: { hide: true, body: routeSchema(loginBody) } }, async (req, reply) => {
    const nonce = randomBytes(16).toString('base64');
    reply.header('content-security-policy', grantsPageCsp(nonce)).type('text/html');
    return signIn(reply, (req.body as z.infer<typeof loginBody>).key, nonce);
  });

  /** Sets the session cookie and redirects to a clean URL (the key leaves the address bar). */
  function signIn(reply: FastifyReply, key: string, nonce: string) {
    if (!deps.authenticator.authenticate(key)) return reply.code(401).send(renderLoginPage(nonce, true));
    return reply
      .setCookie(SESSION_COOKIE, key, { path: '/', httpOnly: true, sameSite: 'strict', maxAge: 12 * 3600 })
      .redirect('./', 303);
  }

  // Everything below needs an API key (bearer header, or the page's session cookie).
  await server.register(async (scope) => {
    scope.addHook('onRequest', authenticate);
    const tags = ['grants'];
    const security = [{ apiKey: [] }];

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
      async (req) => view(resolveGrant(req, (req.params as z.infer<typeof grantParams>).id), 20),
    );

    scope.get(
      '/v1/grants/:id/token',
      {
        schema: {
          tags,
          security,
          summary: 'An access token valid for at least min_valid seconds, refreshed on demand when needed',
          description:
            'One refresh per grant version however many callers ask at once (the worker’s lease). ' +
            '409: the grant needs re-consent or its client is misconfigured; 422: no token from this provider lives ' +
            'that long; 503 with Retry-After: the provider is failing or another process holds the refresh.',
          params: routeSchema(grantParams),
          querystring: routeSchema(tokenQuery),
          response: { 200: routeSchema(tokenView, 'output'), ...errors(400, 401, 403, 404, 409, 422, 503) },
        },
      },
      async (req, reply) => {
        const grant = resolveGrant(req, (req.params as z.infer<typeof grantParams>).id);
        const query = req.query as z.infer<typeof tokenQuery>;
        const token = await readToken(grant, { minValidSec: query.min_valid, force: query.force === 'true' });
        reply.header('cache-control', 'no-store');
        return {
          grant_id: token.grantId,
          access_token: token.accessToken,
          token_type: token.tokenType,
          expires_at: new Date(token.expiresAt).toISOString(),
          expires_in: Math.max(0, Math.floor((token.expiresAt - Date.now()) / 1000)),
          refreshed: token.refreshed,
        };
      },
    );

    scope.post(
      '/v1/grants/:id/refresh',
      {
        schema: {
          tags,
          security,
          summary: 'Refresh now and wait for the outcome',
          params: routeSchema(grantParams),
          response: { 200: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404, 409, 503) },
        },
      },
      async (req) => {
        const grant = resolveGrant(req, (req.params as z.infer<typeof grantParams>).id);
        await readToken(grant, { force: true });
        return view(app.grants.get(grant.id) ?? grant, 20);
      },
    );

    scope.post(
      '/v1/grants/:id/retry',
      {
        schema: {
          tags,
          security,
          summary:
            'Retry now through the worker (202): a live grant becomes due, a stopped one (needs_reconsent, client_error) is tried again as failing',
          params: routeSchema(grantParams),
          response: { 202: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404, 503) },
        },
      },
      async (req, reply) => {
        const grant = resolveGrant(req, (req.params as z.infer<typeof grantParams>).id);
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
        schema: {
          tags,
          security,
          summary: 'Switch between eager refreshing and keepalive (refresh on demand, keep the grant alive)',
          params: routeSchema(grantParams),
          body: routeSchema(modeBody),
          response: { 200: routeSchema(grantView, 'output'), ...errors(400, 401, 403, 404, 503) },
        },
      },
      async (req) => {
        const grant = resolveGrant(req, (req.params as z.infer<typeof grantParams>).id);
        const { mode } = req.body as z.infer<typeof modeBody>;
        return view(await setGrantMode(app, engine, grant, mode), 20);
      },
    );

    await registerQueueDashboard(scope, deps.queues);
  });

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

  return server;
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

/** @bull-board at /admin/queues, inside the authenticated scope: browse, retry and clean jobs. */
async function registerQueueDashboard(scope: FastifyInstance, queues: Queue[]): Promise<void> {
  const adapter = new FastifyAdapter();
  adapter.setBasePath('/admin/queues');
  // @bull-board/fastify pins its own copy of @bull-board/api: same shape, distinct declarations.
  const serverAdapter = adapter as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'];
  createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter });
  await scope.register(adapter.registerPlugin(), { prefix: '/admin/queues' });
}

async function probe(check: () => unknown): Promise<'ok' | 'failed'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(check),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), READY_TIMEOUT_MS);
      }),
    ]);
    return 'ok';
  } catch {
    return 'failed';
  } finally {
    clearTimeout(timer);
  }
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ');
}

/** A Retry-After header (whole seconds, at least 1) for a retry at `at`. */
function retryAfter(at: number): Record<string, string> {
  return { 'retry-after': String(Math.max(1, Math.ceil((at - Date.now()) / 1000))) };
}
