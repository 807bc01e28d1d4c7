import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { RefreshService } from '../../service/refresh-service.js';
import type { StoreContext } from '../../service/store-context.js';
import { requireAdmin } from '../auth/authentication.js';
import { clientList, errorResponses } from '../schemas.js';
import { toClientView } from '../views/client-view.js';

/** GET /v1/clients: the registered clients with their rate limits and whether they are degraded (admin keys). */
export function registerClientRoutes(
  parent: FastifyInstance,
  { app, engine }: { app: StoreContext; engine: RefreshService['engine'] },
): void {
  parent.withTypeProvider<ZodTypeProvider>().get(
    '/v1/clients',
    {
      onRequest: requireAdmin,
      schema: {
        tags: ['clients'],
        security: [{ apiKey: [] }],
        summary:
          'The OAuth clients, their rate limits and pacing condition: degraded while paused after a 429 or Retry-After, or while a burst of failures holds its breaker open (admin keys)',
        response: { 200: clientList, ...errorResponses(401, 403) },
      },
    },
    async () => {
      const clients = await app.clients.list();
      const views = await Promise.all(
        clients.map(async (c) => toClientView(c, await engine.pacer.condition(c.id))),
      );
      return { clients: views, now: new Date().toISOString() };
    },
  );
}
