import fastifyCookie from '@fastify/cookie';
import type { Queue, Worker } from 'bullmq';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { serializerCompiler } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import type { AllowedHost } from '../config/config-schema.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RedisClient } from '../redis/redis-endpoint.js';
import type { RefreshService } from '../service/refresh-service.js';
import type { StoreContext } from '../service/store-context.js';
import type { ApiKeyAuthenticator } from './auth/api-key-authenticator.js';
import { authentication } from './auth/authentication.js';
import { type BrowserSessions, SESSION_COOKIE } from './auth/browser-sessions.js';
import { registerQueueDashboard } from './dashboard.js';
import { answerError, refuse } from './errors.js';
import { browserWriteGuard, requestGuards } from './guards/request-guards.js';
import { type ApiLimits, apiLimits, MAX_PARAM_LENGTH } from './guards/server-limits.js';
import { registerClientRoutes } from './routes/clients.js';
import { registerConsentLinkApi, registerConsentLinkPages } from './routes/consent-links.js';
import { registerFleetRoutes } from './routes/fleet.js';
import { registerGrantRoutes } from './routes/grants.js';
import { registerOpenApi, registerProbeRoutes } from './routes/ops.js';
import { registerSessionRoutes } from './routes/page.js';
import { registerAssetRoutes } from './routes/page-assets.js';

export interface ApiDeps {
  app: StoreContext;
  engine: RefreshService['engine'];
  connection: RedisClient;
  /** The refresh worker, when this process runs one: readiness then requires it running. */
  worker?: Worker;
  /** Queues shown on the dashboard. */
  queues: Queue[];
  metrics: Metrics;
  authenticator: ApiKeyAuthenticator;
  sessions: BrowserSessions;
  /** The address the API binds to, and Host headers allowed besides it and the loopback names. */
  host: { bind: string; allowed: readonly AllowedHost[] };
  /** GRANTKEEPER_PUBLIC_URL: where consent links and the provider's redirect reach this API. */
  publicUrl?: string;
  /** Tests shorten the timeouts; operators keep the defaults. */
  limits?: Partial<ApiLimits>;
  logger: Logger;
}

export async function buildApiServer(deps: ApiDeps): Promise<FastifyInstance> {
  const limits = apiLimits(deps.engine.leaseMs, deps.limits);
  const server = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Per-request log lines would dominate the token route's cost; failures are logged below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 16 * 1024,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.connectionTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: {
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: limits.timeoutCheckIntervalMs,
    },
  });
  server.server.maxConnections = limits.maxConnections;
  useZodSchemas(server);
  server.setErrorHandler(answerError);
  server.setNotFoundHandler((req, reply) =>
    refuse(reply, new GrantkeeperError('not_found', `no route ${req.method} ${req.url.split('?')[0]}`)),
  );
  // The login form posts urlencoded; parsed here so no extra plugin is needed.
  server.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
  );

  await server.register(requestGuards, deps.host);
  // No parsing hook: only the session routes and the cookie fallback read the cookie, so the
  // bearer-authenticated token route skips a hook per request.
  await server.register(fastifyCookie, { hook: false });
  const sessionId = (req: FastifyRequest): string | undefined => {
    const header = req.headers.cookie;
    return header ? server.parseCookie(header)[SESSION_COOKIE] : undefined;
  };
  await registerOpenApi(server);

  registerProbeRoutes(server, deps);
  registerSessionRoutes(server, { sessions: deps.sessions, sessionId });
  registerAssetRoutes(server);
  const links = { ...deps, publicUrl: deps.publicUrl };
  registerConsentLinkPages(server, links);

  // Everything below needs an API key (bearer header, or the page's session cookie).
  await server.register(async (authenticated) => {
    await authenticated.register(authentication, {
      keys: deps.authenticator,
      sessions: deps.sessions,
      sessionId,
    });
    await authenticated.register(async (api) => {
      api.addHook('onRequest', browserWriteGuard({ csrfToken: true }));
      registerGrantRoutes(api, deps);
      registerFleetRoutes(api, deps);
      registerClientRoutes(api, deps);
      registerConsentLinkApi(api, links);
    });
    await registerQueueDashboard(authenticated, deps.queues);
  });

  return server;
}

/** Route schemas are zod (fastify-type-provider-zod): validated, typed and encoded through it. */
function useZodSchemas(server: FastifyInstance): void {
  // Our own validator, not the provider's: a refusal is the vocabulary's bad_request, worded for people.
  server.setValidatorCompiler<z.ZodType>(({ schema }) => (data: unknown) => {
    const parsed = schema.safeParse(data);
    return parsed.success
      ? { value: parsed.data }
      : { error: new GrantkeeperError('bad_request', describe(parsed.error)) };
  });
  server.setSerializerCompiler(serializerCompiler);
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'value'}: ${i.message}`).join('; ');
}
