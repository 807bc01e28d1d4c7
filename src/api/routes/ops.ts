import fastifySwagger from '@fastify/swagger';
import type { Worker } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { createJsonSchemaTransform } from 'fastify-type-provider-zod';
import type { Metrics } from '../../metrics/metrics.js';
import type { RedisClient } from '../../redis/redis-endpoint.js';
import type { RefreshService } from '../../service/refresh-service.js';
import type { StoreContext } from '../../service/store-context.js';
import { TIMED_OUT, withTimeout } from '../../util/with-timeout.js';

const READY_TIMEOUT_MS = 1000;

export interface ProbeRouteDeps {
  app: StoreContext;
  engine: RefreshService['engine'];
  connection: RedisClient;
  /** The refresh worker, when this process runs one: readiness then requires it running. */
  worker?: Worker;
  metrics: Metrics;
}

/** Collects every route's schema into the OpenAPI document; register before the routes. */
export async function registerOpenApi(server: FastifyInstance): Promise<void> {
  await server.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'grantkeeper',
        version: '1',
        description:
          'Fresh OAuth access tokens for the grants grantkeeper keeps alive. Authenticate with `Authorization: Bearer gk_…` ' +
          '(grantkeeper apikey create NAME --grants … for a reader of those grants, --admin for writes).',
      },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
    },
    hideUntagged: true,
    // A zod type the OpenAPI 3.0 subset cannot express (a transform, a preprocess) is described as any.
    transform: createJsonSchemaTransform({ zodToJsonConfig: { unrepresentable: 'any' } }),
  });
}

/**
 * Liveness, readiness, metrics and the OpenAPI document: no key needed, nothing in them names a
 * grant. The probes and the scrape answer any Host (they reach the pod by IP).
 */
export function registerProbeRoutes(server: FastifyInstance, deps: ProbeRouteDeps): void {
  const anyHost = { schema: { hide: true }, config: { anyHost: true } };

  server.get('/healthz', anyHost, async () => ({ status: 'ok' }));

  server.get('/readyz', anyHost, async (_req, reply) => {
    const checks = {
      db: probe(async () => {
        await deps.app.admin.ping();
        return 'ok';
      }),
      redis: probe(async () => {
        await deps.connection.ping();
        return 'ok';
      }),
      worker: deps.worker
        ? probe(() => (deps.worker?.isRunning() ? 'ok' : 'failed'))
        : Promise.resolve('not_started' as const),
      // Paused (from the dashboard or by hand), nothing is refreshed: not ready, though nothing broke.
      queue: probe(async () => ((await deps.engine.queue.isPaused()) ? 'paused' : 'ok')),
      // Not a failure: stored tokens are still served; only refreshes wait for space.
      storage: Promise.resolve(deps.engine.storage.paused ? ('disk_full' as const) : ('ok' as const)),
    };
    const results = Object.fromEntries(
      await Promise.all(Object.entries(checks).map(async ([k, v]) => [k, await v] as const)),
    );
    const ready = Object.values(results).every((r) => r !== 'failed' && r !== 'paused');
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks: results });
  });

  server.get('/metrics', anyHost, async (_req, reply) =>
    reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
  );

  server.get('/openapi.json', { schema: { hide: true } }, async () => server.swagger());
}

/** The check's verdict, or 'failed' when it throws or takes longer than a second. */
async function probe<T extends string>(check: () => T | Promise<T>): Promise<T | 'failed'> {
  try {
    const verdict = await withTimeout(Promise.resolve().then(check), READY_TIMEOUT_MS);
    return verdict === TIMED_OUT ? 'failed' : verdict;
  } catch {
    return 'failed';
  }
}
