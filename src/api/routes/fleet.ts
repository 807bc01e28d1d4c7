import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { RefreshService } from '../../service/refresh-service.js';
import type { StoreContext } from '../../service/store-context.js';
import { principalOf } from '../auth/authentication.js';
import { errorResponses, fleetView } from '../schemas.js';
import { fleetQuery, toFleetView } from '../views/fleet-view.js';

/**
 * GET /v1/fleet: the grants page's summary, aggregated by the store (no row per grant is loaded),
 * over the grants the key may see: a reader's counts include only its own grants.
 */
export function registerFleetRoutes(
  parent: FastifyInstance,
  { app, engine }: { app: StoreContext; engine: Pick<RefreshService['engine'], 'pacer'> },
): void {
  parent.withTypeProvider<ZodTypeProvider>().get(
    '/v1/fleet',
    {
      schema: {
        tags: ['grants'],
        security: [{ apiKey: [] }],
        summary:
          'The fleet at a glance: counts by state and client, planned refreshes and keep-alive deadlines over the next 24 h, refresh outcomes and token-endpoint latency per client over the last 24 h',
        response: { 200: fleetView, ...errorResponses(401) },
      },
    },
    async (req) => {
      const principal = principalOf(req);
      const now = Date.now();
      const clients = await app.clients.list();
      const query = fleetQuery(now, principal.grantIds === null ? null : [...principal.grantIds], clients);
      const [summary, conditions] = await Promise.all([
        app.grants.fleetSummary(query),
        Promise.all(clients.map(async (c) => [c.id, await engine.pacer.condition(c.id)] as const)),
      ]);
      return toFleetView(summary, query, clients, now, new Map(conditions));
    },
  );
}
