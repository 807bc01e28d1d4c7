import {
  type AlertQueue,
  type AlertRetryPolicy,
  createAlertQueue,
  enqueueAlert,
  webhookTargetId,
} from '../../jobs/alert-queue.js';
import type { LoadedConfig } from '../config/load-config.js';
import type {
  AlertView,
  ClientRepository,
  GrantRepository,
  ServiceStateRepository,
} from '../grants/ports.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { PaceTransition } from '../pacing/client-pacer.js';
import { decodeMark, dueWarning, encodeMark, widestWindow } from '../policy/expiry-warnings.js';
import { grantHorizon } from '../policy/grant-horizon.js';
import { connectRedis, type RedisEndpoint } from '../redis/redis-endpoint.js';
import type { RefreshResult } from '../refresh/outcomes.js';
import type { RefreshAttempt, RefreshObserver } from '../refresh/refresh-observer.js';
import { type AheadAlertEvent, type AlertEvent, decideAlert } from './alert-policy.js';

export interface AlertMonitorDeps {
  grants: GrantRepository;
  /** Alert bookkeeping for things that are not grants (queues). */
  serviceState: ServiceStateRepository;
  queue: AlertQueue;
  /** Signs each job, so the worker can tell ours from anything else written to Redis. */
  secret: string;
  /** Webhook target ids (hashes of their URLs). */
  targets: readonly string[];
  failingAfter: number;
  logger: Logger;
  retry?: AlertRetryPolicy;
  now?: () => number;
  /** Warnings ahead of deadlines, by the service's sweep; a monitor without it only reports conditions. */
  ahead?: AheadWarnings;
}

export interface AheadWarnings {
  clients: Pick<ClientRepository, 'list'>;
  /** How far ahead of a grant's consent deadline each warning goes (default 7 days and 1 day). */
  grantWindowsMs: readonly number[];
  /** How far ahead of a client secret's end (default 30 days). */
  secretWindowsMs: readonly number[];
  metrics?: Pick<Metrics, 'warnedAhead'>;
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
    if (result.status === 'conflict') {
      // Not a condition but an event: the grant's state did not change, so no transition shows it.
      this.track(this.queue('grant.conflict', result.grant.id, async () => {}));
      return;
    }
    if ('grant' in result) this.track(this.evaluate(result.grant));
  }

  /**
   * One incident per client, not one per grant: the pacer reports each degraded/recovered edge to
   * exactly one process, so this queues it once. Redis refusing it loses it (the edge is past), which
   * is logged.
   */
  onClientTransition(client: { id: string }, transition: PaceTransition): void {
    const event = transition.kind === 'degraded' ? 'client.degraded' : 'client.recovered';
    this.track(this.queue(event, client.id, async () => {}));
  }

  /**
   * A queue was found paused or resumed (at start too). The store's compare-and-swap on the queue's
   * alerted state makes each transition alert once across every process watching the queue.
   */
  async onQueuePause(queue: string, paused: boolean): Promise<void> {
    const { serviceState } = this.deps;
    const key = `alerted:queue:${queue}`;
    const [from, to] = paused ? [null, 'paused'] : ['paused', null];
    if (!(await serviceState.compareAndSet(key, from, to))) return;
    await this.queue(paused ? 'queue.paused' : 'queue.resumed', queue, () =>
      serviceState.compareAndSet(key, to, from),
    );
  }

  /** Call after a consent is saved: a grant that was alerted as dead gets its `grant.recovered`. */
  onConsentSaved(grant: AlertView): Promise<void> {
    return this.evaluate(grant);
  }

  async sweep(): Promise<void> {
    const candidates = await this.deps.grants.listAlertCandidates();
    await Promise.all(candidates.map((g) => this.evaluate(g)));
    if (this.deps.ahead) await this.sweepAhead(this.deps.ahead);
  }

  /**
   * Warnings ahead: a grant whose consent deadline (hard end, or idle deadline) or a client whose
   * secret's end date has entered a window. Which window was warned for which deadline is kept in
   * the store's service state, claimed by compare-and-swap, so replicas and restarts send each once.
   */
  private async sweepAhead(ahead: AheadWarnings): Promise<void> {
    const now = this.now();
    const clients = await ahead.clients.list();
    const idleLimitOf = new Map(clients.map((c) => [c.id, c.profile.refreshIdleLimitSec]));
    const expiring = await this.deps.grants.listExpiring({
      before: now + widestWindow(ahead.grantWindowsMs),
      idleLimits: clients.map((c) => ({ clientRef: c.id, limitMs: c.profile.refreshIdleLimitSec * 1000 })),
    });
    for (const grant of expiring) {
      const deadline = grantHorizon(grant, idleLimitOf.get(grant.clientRef)).needsConsentBy;
      if (!deadline) continue;
      await this.warnAhead(ahead, 'grant.expiring', grant.id, deadline.at, ahead.grantWindowsMs, now, {
        grantId: grant.id,
        reason: deadline.reason,
      });
    }
    for (const client of clients) {
      const ends = client.secret.expiresAt;
      if (!client.hasSecret || ends === null) continue;
      await this.warnAhead(ahead, 'client.secret_expiring', client.id, ends, ahead.secretWindowsMs, now, {
        clientId: client.id,
        client: client.name,
      });
    }
  }

  private async warnAhead(
    ahead: AheadWarnings,
    event: AheadAlertEvent,
    subject: string,
    deadline: number,
    windowsMs: readonly number[],
    now: number,
    about: Record<string, string>,
  ): Promise<void> {
    const { serviceState, logger } = this.deps;
    const key = `warned:${event}:${subject}`;
    const stored = await serviceState.get(key);
    const windowMs = dueWarning(deadline, windowsMs, decodeMark(stored), now);
    if (windowMs === undefined) return;
    const mark = encodeMark({ deadline, windowMs });
    if (!(await serviceState.compareAndSet(key, stored, mark))) return;
    logger.warn(
      { ...about, event, deadline: new Date(deadline).toISOString(), windowDays: windowMs / 86_400_000 },
      event === 'grant.expiring'
        ? 'grant will need a new consent soon: no refresh can keep it past this deadline'
        : 'client secret ends soon: create a new one and run grantkeeper client secret rotate',
    );
    ahead.metrics?.warnedAhead(event);
    await this.queue(event, subject, () => serviceState.compareAndSet(key, mark, stored));
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
  private async evaluate(grant: AlertView): Promise<void> {
    const decision = decideAlert(grant, this.deps.failingAfter, this.now());
    if (!decision) return;
    const { grants } = this.deps;
    if (!(await grants.markAlerted(grant.id, grant.alertedState, decision.alertedState))) return;
    await this.queue(decision.event, grant.id, () =>
      grants.markAlerted(grant.id, decision.alertedState, grant.alertedState),
    );
  }

  /** Observers must not throw into the refresh path: a failure here is logged; the sweep retries. */
  private track(work: Promise<void>): void {
    const tracked = work
      .catch((err: Error) =>
        this.deps.logger.warn(
          { err: { message: err.message } },
          'could not evaluate an alert; the next sweep retries',
        ),
      )
      .finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  /** Queues one alert; `undo` runs when Redis refuses it, so the next sweep tries again. */
  private queue(event: AlertEvent, subject: string, undo: () => Promise<unknown>): Promise<void> {
    const { logger } = this.deps;
    const queued = enqueueAlert(
      this.deps.queue,
      this.deps.secret,
      { event, subject, at: this.now() },
      this.deps.targets,
      this.deps.retry,
    )
      .then(() => logger.info({ subject, event }, 'alert queued'))
      .catch(async (err: Error) => {
        await undo().catch(() => {});
        logger.warn(
          { subject, event, err: { message: err.message } },
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
  deps: {
    loaded: LoadedConfig;
    grants: GrantRepository;
    serviceState: ServiceStateRepository;
    redis: RedisEndpoint | undefined;
    logger: Logger;
  },
  grant: AlertView,
): Promise<void> {
  const { config } = deps.loaded;
  const secret = deps.loaded.secrets.webhookSecret;
  if (!deps.redis || config.webhookUrls.length === 0 || !secret) return;
  const connection = connectRedis(deps.redis, {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    lazyConnect: true,
  });
  connection.on('error', () => {});
  const queue = createAlertQueue(connection, config.queuePrefix);
  queue.on('error', () => {});
  try {
    const monitor = new AlertMonitor({
      grants: deps.grants,
      serviceState: deps.serviceState,
      queue,
      secret,
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
