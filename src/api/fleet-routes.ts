import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../service/app-context.js';
import type { Principal } from './auth.js';
import { fleetQuery, toFleetView } from './fleet-view.js';
import { errorBody, fleetView, routeSchema } from './schemas.js';

/**
 * GET /v1/fleet: the grants page's summary, aggregated by the store (no row per grant is loaded),
 * over the grants the key may see: a reader's counts include only its own grants.
 */
export function registerFleetRoutes(scope: FastifyInstance, { app }: { app: AppContext }): void {
  scope.get(
    '/v1/fleet',
    {
      schema: {
        tags: ['grants'],
        security: [{ apiKey: [] }],
        summary:
          'The fleet at a glance: counts by state and client, planned refreshes and keep-alive deadlines over the next 24 h, refresh outcomes and token-endpoint latency per client over the last 24 h',
        response: {
          200: routeSchema(fleetView, 'output'),
          401: routeSchema(errorBody, 'output'),
        },
      },
    },
    async (req) => {
      const principal = req.principal as Principal;
      const now = Date.now();
      const clients = await app.clients.list();
      const query = fleetQuery(now, principal.grantIds === null ? null : [...principal.grantIds], clients);
      return toFleetView(await app.grants.fleetSummary(query), query, clients, now);
    },
  );
}
