/**
 * The token-read reference: a bare fastify route returning a constant token body, in its own
 * process like the API would be. What any HTTP token read on this stack costs at least.
 *   fork(constant-route-server.ts) → { type: 'ready', port }
 */
import Fastify from 'fastify';
import { childMain } from './processes.js';

childMain(async () => {
  const app = Fastify({ logger: false, keepAliveTimeout: 60_000 });
  const body = {
    access_token: `at_${'x'.repeat(64)}`,
    token_type: 'Bearer',
    expires_at: '2030-01-01T00:00:00.000Z',
  };
  app.get('/v1/grants/:id/token', async () => body);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  process.send?.({ type: 'ready', port: typeof address === 'object' && address ? address.port : 0 });
});
