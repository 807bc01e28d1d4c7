/**
 * The token-read subject: grantkeeper's real HTTP API (startGrantkeeper without workers, as
 * `grantkeeper serve` runs it) on a seeded db, in its own process like the reference route, so the
 * load generator does not share its event loop.
 * Protocol: parent sends { type: 'start', ...ApiServerRequest }; child answers ApiServerReady
 * (url, a fresh API key shown once, the grants it serves); parent sends { type: 'stop' }; child
 * stops the service, answers { type: 'stopped' } and exits.
 */
import pino from 'pino';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { configSchema } from '../../src/config/config-schema.js';
import { createLogger } from '../../src/log/logger.js';
import { startGrantkeeper } from '../../src/service/grantkeeper-service.js';
import { childMain } from './processes.js';

export interface ApiServerRequest {
  dataDir: string;
  /** The seeded PostgreSQL database; unset: the SQLite store in `dataDir`. */
  databaseUrl?: string;
  /** GRANTKEEPER_KEY of the seeded db. */
  key: string;
  redisUrl: string;
}

export interface ApiServerReady {
  type: 'ready';
  url: string;
  /** Bearer key for every grant. */
  apiKey: string;
  grantIds: string[];
}

childMain(async () => {
  const req = await new Promise<ApiServerRequest>((resolve) =>
    process.once('message', (m) => resolve(m as ApiServerRequest & { type: 'start' })),
  );
  // Warnings and errors still reach the terminal; the API logs no line per request.
  const logger = createLogger({ level: 'warn', destination: pino.destination({ dest: 2, sync: false }) });
  const keeper = await startGrantkeeper(
    {
      config: configSchema.parse({
        dataDir: req.dataDir,
        ...(req.databaseUrl ? { databaseUrl: req.databaseUrl } : {}),
        redisUrl: req.redisUrl,
        logLevel: 'warn',
        apiHost: '127.0.0.1',
        apiPort: 0,
      }),
      secrets: { key: req.key },
    },
    logger,
    { runWorker: false, env: {} },
  );
  const stopped = new Promise<void>((resolve) => {
    process.on('message', (m) => {
      if ((m as { type?: string }).type === 'stop') resolve();
    });
  });
  try {
    const { app } = keeper.service;
    const { key: apiKey } = await issueApiKey(app.apiKeys, {
      name: 'bench',
      role: 'admin',
      now: Date.now(),
    });
    const ready: ApiServerReady = {
      type: 'ready',
      url: keeper.url,
      apiKey,
      grantIds: (await app.grants.list()).map((g) => g.id),
    };
    process.send?.(ready);
    await stopped;
  } finally {
    await keeper.stop();
  }
  process.send?.({ type: 'stopped' }, () => process.disconnect());
});
