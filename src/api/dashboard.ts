import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { requireAdmin } from './auth/authentication.js';
import { browserWriteGuard } from './guards/request-guards.js';

export const DASHBOARD_PATH = '/admin/queues';

/**
 * @bull-board at /admin/queues, inside the authenticated scope: browse, pause, retry and clean jobs,
 * or add one. All of it (API and static assets) is for admin keys only; its UI cannot send our CSRF
 * header, so its writes are held to the exact origin alone.
 */
export async function registerQueueDashboard(scope: FastifyInstance, queues: Queue[]): Promise<void> {
  await scope.register(async (board) => {
    board.addHook('onRequest', requireAdmin);
    board.addHook('onRequest', browserWriteGuard({ csrfToken: false }));
    const adapter = new FastifyAdapter();
    adapter.setBasePath(DASHBOARD_PATH);
    // @bull-board/fastify pins its own copy of @bull-board/api: same shape, distinct declarations.
    const serverAdapter = adapter as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'];
    createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter });
    await board.register(adapter.registerPlugin(), { prefix: DASHBOARD_PATH });
  });
}
