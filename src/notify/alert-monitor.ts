import { Redis } from 'ioredis';
import {
  type AlertQueue,
  type AlertRetryPolicy,
  createAlertQueue,
  enqueueAlert,
  webhookTargetId,
} from '../../jobs/alert-queue.js';
import type { LoadedConfig } from '../config/load-config.js';
import type { Logger } from '../log/logger.js';
import type { RefreshResult } from '../refresh/grant-refresher.js';
import type { RefreshAttempt, RefreshObserver } from '../refresh/refresh-observer.js';
import type { AlertView, GrantStore } from '../store/grant-store.js';
import { decideAlert } from './alert-policy.js';

export interface AlertMonitorDeps {
  grants: GrantStore;
  queue: AlertQueue;
  /** Webhook target ids (hashes of their URLs). */
  targets: readonly string[];
  failingAfter: number;
  logger: Logger;
  retry?: AlertRetryPolicy;
  now?: () => number;
}

/**
 * Turns grant state changes into alert jobs. It sees refreshes as they happen (as a refresh
 * observer), and a periodic sweep catches what happened where no monitor was watching (a one-shot
 * CLI refresh, a consent captured by `grantkeeper seed`). Nothing here waits on delivery.
 */
export class AlertMonitor implements RefreshObserver {
  private timer?: NodeJS.Timeout;
  private readonly pending = new Set<Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly deps: AlertMonitorDeps) {
    this.now = deps.now ?? Date.now;
  }

  onRefreshResult(_attempt: RefreshAttempt, result: RefreshResult): void {
    if ('grant' in result) this.evaluate(result.grant);
  }

  /** Call after a consent is saved: a grant that was alerted as dead gets its `grant.recovered`. */
  onConsentSaved(grant: AlertView): Promise<void> {
    return this.evaluate(grant);
  }

  sweep(): Promise<void> {
    return Promise.all(this.deps.grants.listAlertCandidates().map((g) => this.evaluate(g))).then(() => {});
  }

  start(intervalMs: number): void {
    const run = () => {
      this.sweep().catch((err: Error) =>
        this.deps.logger.warn({ err: { message: err.message } }, 'alert sweep failed'),
      );
    };
    run();
    this.timer = setInterval(run, intervalMs);
    this.timer.unref();
  }

  /** Stops the sweep and waits for alerts still being queued. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.allSettled([...this.pending]);
  }

  /**
   * Claims the transition in the db first (so a racing process does not alert it too), then
   * queues it; if Redis refuses, the claim is undone so the next sweep tries again.
   */
  private evaluate(grant: AlertView): Promise<void> {
    const decision = decideAlert(grant, this.deps.failingAfter);
    if (!decision) return Promise.resolve();
    const { grants, logger } = this.deps;
    if (!grants.markAlerted(grant.id, grant.alertedState, decision.alertedState)) return Promise.resolve();
    const queued = enqueueAlert(
      this.deps.queue,
      { event: decision.event, grantId: grant.id, at: this.now() },
      this.deps.targets,
      this.deps.retry,
    )
      .then(() => logger.info({ grantId: grant.id, event: decision.event }, 'alert queued'))
      .catch((err: Error) => {
        grants.markAlerted(grant.id, decision.alertedState, grant.alertedState);
        logger.warn(
          { grantId: grant.id, event: decision.event, err: { message: err.message } },
          'could not queue an alert; the next sweep retries',
        );
      })
      .finally(() => this.pending.delete(queued));
    this.pending.add(queued);
    return queued;
  }
}

/**
 * For the consent path in a process without a running monitor (`grantkeeper seed`): queues
 * `grant.recovered` at once when the service's Redis is reachable. Without it, the service's sweep
 * sends it within one reconcile interval, so failing here is harmless and silent.
 */
export async function onConsentSaved(
  deps: { loaded: LoadedConfig; grants: GrantStore; redisUrl: string | undefined; logger: Logger },
  grant: AlertView,
): Promise<void> {
  const { config } = deps.loaded;
  if (!deps.redisUrl || config.webhookUrls.length === 0 || !deps.loaded.secrets.webhookSecret) return;
  const connection = new Redis(deps.redisUrl, {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    lazyConnect: true,
  });
  connection.on('error', () => {});
  const queue = createAlertQueue(connection, config.queuePrefix);
  try {
    const monitor = new AlertMonitor({
      grants: deps.grants,
      queue,
      targets: config.webhookUrls.map(webhookTargetId),
      failingAfter: config.failingAlertAfter,
      logger: deps.logger,
    });
    await monitor.onConsentSaved(grant);
  } finally {
    await queue.close().catch(() => {});
    connection.disconnect();
  }
}
