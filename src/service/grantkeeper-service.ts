import type { Queue, Worker } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { AlertMonitor } from '../../jobs/alert-monitor.js';
import {
  type AlertJobData,
  type AlertQueue,
  type AlertRetryPolicy,
  createAlertQueue,
  webhookTargetId,
} from '../../jobs/alert-queue.js';
import { createAlertWorker } from '../../jobs/alert-worker.js';
import { ApiKeyAuthenticator } from '../api/auth/api-key-authenticator.js';
import { BrowserSessions } from '../api/auth/browser-sessions.js';
import type { ApiLimits } from '../api/guards/server-limits.js';
import { buildApiServer } from '../api/server.js';
import type { AllowedHost } from '../config/config-schema.js';
import type { LoadedConfig } from '../config/load-config.js';
import { consentLinkDeps, consentLinkPayload } from '../consent/consent-links.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Logger } from '../log/logger.js';
import { Metrics } from '../metrics/metrics.js';
import { logRedisErrors } from '../redis/connection-watch.js';
import type { RefreshObserver } from '../refresh/refresh-observer.js';
import { startTracing } from '../telemetry/tracing.js';
import { CleanupStack } from '../util/cleanup-stack.js';
import { packageVersion } from '../util/package-root.js';
import { type RefreshService, startRefreshService } from './refresh-service.js';

export interface GrantkeeperOptions {
  env?: NodeJS.ProcessEnv;
  /** `run` (default): refresh and alert workers plus the API; `serve`: the API alone. */
  runWorker?: boolean;
  /** Tests shorten the webhook retry back-off. */
  alertRetry?: AlertRetryPolicy;
  /** Tests shorten the API's timeouts and caps. */
  apiLimits?: Partial<ApiLimits>;
}

export interface Grantkeeper {
  service: RefreshService;
  api: FastifyInstance;
  /** Where the API listens, e.g. http://127.0.0.1:7420. */
  url: string;
  metrics: Metrics;
  alerts?: AlertMonitor;
  alertQueue?: AlertQueue;
  stop(): Promise<void>;
}

/**
 * The one composition behind `grantkeeper run` and `grantkeeper serve`: the refresh service with
 * metrics and alert observers, the alert queue and its worker, and the HTTP API.
 */
export async function startGrantkeeper(
  loaded: LoadedConfig,
  logger: Logger,
  options: GrantkeeperOptions = {},
): Promise<Grantkeeper> {
  const { config } = loaded;
  const runWorker = options.runWorker !== false;
  const webhookSecret = loaded.secrets.webhookSecret;
  if (config.webhookUrls.length > 0 && !webhookSecret) {
    throw new GrantkeeperError(
      'bad_config',
      'GRANTKEEPER_WEBHOOK_URLS is set but GRANTKEEPER_WEBHOOK_SECRET is not: alerts must be signed',
    );
  }
  const metrics = new Metrics();
  // The alert monitor needs the service's Redis connection, so observers find it once it exists.
  let alerts: AlertMonitor | undefined;
  const alertObserver: RefreshObserver = {
    onRefreshResult: (a, r) => alerts?.onRefreshResult(a, r),
    onClientTransition: (client, transition) => alerts?.onClientTransition(client, transition),
  };
  // Off unless the standard OTEL_EXPORTER_OTLP_* variables name a collector.
  const tracing = startTracing(options.env ?? process.env, logger, packageVersion());
  let service: RefreshService;
  try {
    service = await startRefreshService(loaded, logger, {
      ...(options.env ? { env: options.env } : {}),
      runWorker,
      observers: [metrics, alertObserver],
      ...(tracing.tracer ? { tracer: tracing.tracer } : {}),
    });
  } catch (err) {
    await tracing.shutdown();
    throw err;
  }
  // Cleanups run last to first: the spans of refreshes that finish during the stop are exported.
  const cleanups = new CleanupStack();
  cleanups.add(() => tracing.shutdown());
  cleanups.add(() => service.stop());
  let redisLost = false;
  void service.redisGone.then(() => {
    redisLost = true;
  });
  const stop = () => cleanups.run();
  try {
    const queues: Queue[] = [service.engine.queue];
    let alertQueue: AlertQueue | undefined;
    if (webhookSecret && config.webhookUrls.length > 0) {
      const queue = createAlertQueue(service.connection, config.queuePrefix);
      logRedisErrors(queue, logger, 'alert queue error');
      alertQueue = queue;
      cleanups.add(() => queue.close());
      queues.push(queue);
      const monitor = new AlertMonitor({
        grants: service.app.grants,
        serviceState: service.app.serviceState,
        queue,
        secret: webhookSecret,
        targets: config.webhookUrls.map(webhookTargetId),
        failingAfter: config.failingAlertAfter,
        clientConditions: { clients: service.app.clients, pacer: service.engine.pacer },
        logger,
        ...(options.alertRetry ? { retry: options.alertRetry } : {}),
        ahead: { clients: service.app.clients, ...aheadWindows(config), metrics },
      });
      alerts = monitor;
      cleanups.add(() => monitor.stop());
      if (runWorker) {
        const worker: Worker<AlertJobData, string> = createAlertWorker({
          connection: service.connection,
          prefix: config.queuePrefix,
          grants: service.app.grants,
          queues: new Map([[service.engine.queue.name, service.engine.queue]]),
          clients: service.app.clients,
          pacer: service.engine.pacer,
          webhookUrls: config.webhookUrls,
          consentLink: (grant) => consentLinkPayload(consentLinkDeps(service.app, config.publicUrl), grant),
          secret: webhookSecret,
          ...aheadWindows(config),
          metrics,
          logger,
        });
        // Without Redis a graceful close never ends; an unfinished delivery is retried on restart.
        cleanups.add(() => worker.close(redisLost));
        // The sweep catches transitions no observer saw (CLI refreshes, re-consent by `seed`).
        monitor.start(config.reconcileIntervalSeconds * 1000);
        // A pause found at start happened before this subscription: the store's CAS makes it once.
        const pause = service.queuePause;
        if (pause) {
          const name = service.engine.queue.name;
          // The next sweep does not see queue pauses: a store that refused now is logged, not retried.
          const alertPause = (queue: string, paused: boolean) =>
            monitor.onQueuePause(queue, paused).catch((err: unknown) => {
              logger.warn(
                { queue, paused, err: { message: (err as Error).message } },
                'could not record a queue pause alert',
              );
            });
          pause.onChange(({ queue, paused }) => void alertPause(queue, paused));
          if (pause.paused !== undefined) void alertPause(name, pause.paused);
        }
      }
    }
    metrics.bind({
      grants: service.app.grants,
      clients: service.app.clients,
      queues: queues.map((queue) => ({ name: queue.name, queue })),
      storage: service.engine.storage,
      pacer: service.engine.pacer,
    });
    service.worker?.on('active', (job) => {
      metrics.observeLateness((Date.now() - job.timestamp - (job.delay ?? 0)) / 1000);
    });

    const authenticator = new ApiKeyAuthenticator(service.app.apiKeys, logger);
    await authenticator.load();
    authenticator.start();
    cleanups.add(() => authenticator.stop());
    const api = await buildApiServer({
      app: service.app,
      engine: service.engine,
      connection: service.connection,
      ...(service.worker ? { worker: service.worker } : {}),
      queues,
      metrics,
      authenticator,
      sessions: new BrowserSessions(service.app.sessions, authenticator),
      // Browsers reach consent links by the public URL's name, which is then a host we answer for.
      host: { bind: config.apiHost, allowed: [...config.apiAllowedHosts, ...publicHost(config.publicUrl)] },
      ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}),
      ...(options.apiLimits ? { limits: options.apiLimits } : {}),
      logger,
    });
    cleanups.add(() => api.close());
    try {
      await api.listen({ host: config.apiHost, port: config.apiPort });
    } catch (err) {
      throw new GrantkeeperError(
        'address_unavailable',
        `the API cannot listen on ${config.apiHost}:${config.apiPort} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): set GRANTKEEPER_API_HOST / GRANTKEEPER_API_PORT`,
        { cause: err },
      );
    }
    const address = api.server.address();
    const port = typeof address === 'object' && address ? address.port : config.apiPort;
    const host = config.apiHost.includes(':') ? `[${config.apiHost}]` : config.apiHost;
    const url = `http://${host}:${port}`;
    logger.info({ url, worker: runWorker, alerts: alerts !== undefined }, 'grantkeeper API listening');
    return {
      service,
      api,
      url,
      metrics,
      ...(alerts ? { alerts } : {}),
      ...(alertQueue ? { alertQueue } : {}),
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}

/** The configured warning windows (days) in ms, for the monitor that sends and the worker that checks. */
function aheadWindows(config: LoadedConfig['config']): {
  grantWindowsMs: number[];
  secretWindowsMs: number[];
} {
  const ms = (days: number[]) => days.map((d) => Math.round(d * 86_400_000));
  return { grantWindowsMs: ms(config.expiryWarningDays), secretWindowsMs: ms(config.secretWarningDays) };
}

/** The public URL's host as the Host check admits it: with its port, or on any (a proxy's default). */
function publicHost(publicUrl: string | undefined): AllowedHost[] {
  if (!publicUrl) return [];
  const url = new URL(publicUrl);
  return [{ host: url.hostname, port: url.port ? Number(url.port) : null }];
}
