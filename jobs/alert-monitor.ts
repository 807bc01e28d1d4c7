import type { LoadedConfig } from '../src/config/load-config.js';
import type {
  AlertView,
  ClientRepository,
  GrantRepository,
  ServiceStateRepository,
} from '../src/grants/ports.js';
import type { Logger } from '../src/log/logger.js';
import type { Metrics } from '../src/metrics/metrics.js';
import { type AheadAlertEvent, type AlertEvent, decideAlert } from '../src/notify/alert-policy.js';
import type { ClientPacer, PaceTransition } from '../src/pacing/client-pacer.js';
import { decodeMark, dueWarning, encodeMark, widestWindow } from '../src/policy/expiry-warnings.js';
import { grantHorizon } from '../src/policy/grant-horizon.js';
import { connectRedis, type RedisClient, type RedisEndpoint } from '../src/redis/redis-endpoint.js';
import type { RefreshResult } from '../src/refresh/outcomes.js';
import type { RefreshAttempt, RefreshObserver } from '../src/refresh/refresh-observer.js';
import {
  type AlertQueue,
  type AlertRetryPolicy,
  createAlertQueue,
  enqueueAlert,
  webhookTargetId,
} from './alert-queue.js';

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
  /** With them, the sweep also finds a failing client's edges that no process could alert. */
  clientConditions?: { clients: Pick<ClientRepository, 'list'>; pacer: Pick<ClientPacer, 'condition'> };
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
    if (result.status === 'stopped' && result.incident) {
      this.track(this.fold(result.grant));
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
    if (transition.kind === 'failing' || (transition.kind === 'recovered' && transition.from === 'failing')) {
      this.track(this.syncClient(client.id, transition.kind === 'failing'));
      return;
    }
    this.track(this.queue(`client.${transition.kind}`, client.id, async () => {}));
  }

  /**
   * A failing client's incident is also claimed in the store, like a paused queue: the sweep then
   * alerts an edge whose reporting process could not (a one-shot command without webhooks), once.
   * The claim is read before the condition: a claim seen means the client was failing by then, so a
   * condition read after it that says otherwise is a real recovery, never one read too early.
   */
  private async syncClient(clientId: string, observed?: boolean): Promise<void> {
    const key = `alerted:client:${clientId}`;
    const alerted = (await this.deps.serviceState.get(key)) === 'failing';
    const conditions = this.deps.clientConditions;
    const failing = conditions ? (await conditions.pacer.condition(clientId)).state === 'failing' : observed;
    if (failing === undefined || failing === alerted) return;
    await this.alertEdge(key, 'failing', failing, clientId, ['client.failing', 'client.recovered']);
  }

  /**
   * A queue was found paused or resumed (at start too). The store's compare-and-swap on the queue's
   * alerted state makes each transition alert once across every process watching the queue.
   */
  onQueuePause(queue: string, paused: boolean): Promise<void> {
    return this.alertEdge(`alerted:queue:${queue}`, 'paused', paused, queue, [
      'queue.paused',
      'queue.resumed',
    ]);
  }

  /** Moves `key` between absent and `state` in the store and alerts the edge it made, if it made one. */
  private async alertEdge(
    key: string,
    state: string,
    on: boolean,
    subject: string,
    [onEvent, offEvent]: [AlertEvent, AlertEvent],
  ): Promise<void> {
    const { serviceState } = this.deps;
    const [from, to] = on ? [null, state] : [state, null];
    if (!(await serviceState.compareAndSet(key, from, to))) return;
    await this.queue(on ? onEvent : offEvent, subject, () => serviceState.compareAndSet(key, to, from));
  }

  /** Call after a consent is saved: a grant that was alerted as dead gets its `grant.recovered`. */
  onConsentSaved(grant: AlertView): Promise<void> {
    return this.evaluate(grant);
  }

  async sweep(): Promise<void> {
    const candidates = await this.deps.grants.listAlertCandidates();
    await Promise.all(candidates.map((g) => this.evaluate(g)));
    await this.sweepClients();
    if (this.deps.ahead) await this.sweepAhead(this.deps.ahead);
  }

  /** Client incidents whose edges no process could alert (a command without the webhook secret). */
  private async sweepClients(): Promise<void> {
    const conditions = this.deps.clientConditions;
    if (!conditions) return;
    for (const client of await conditions.clients.list()) await this.syncClient(client.id);
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

  /**
   * A grant stopped under its client's incident: its `client_error` is marked alerted without a
   * webhook of its own (the client's `client.failing` covers it), so no sweep sends one later.
   */
  private async fold(grant: AlertView): Promise<void> {
    const decision = decideAlert(grant, this.deps.failingAfter, this.now());
    if (decision?.event !== 'grant.client_error') return this.evaluate(grant);
    await this.deps.grants.markAlerted(grant.id, grant.alertedState, decision.alertedState);
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
 * A monitor for a one-shot command on the service's Redis, when webhooks are configured: it is
 * not started (the service sweeps), but what the command's own refreshes change is queued at once,
 * above all a client's transition (an operator's retry that recovers a failing client), which is
 * reported to this process alone and no sweep would find.
 */
export function openCommandAlerts(deps: {
  loaded: LoadedConfig;
  grants: GrantRepository;
  serviceState: ServiceStateRepository;
  connection: RedisClient;
  logger: Logger;
}): { monitor: AlertMonitor; close: () => Promise<void> } | undefined {
  const { config } = deps.loaded;
  const secret = deps.loaded.secrets.webhookSecret;
  if (config.webhookUrls.length === 0 || !secret) return undefined;
  const queue = createAlertQueue(deps.connection, config.queuePrefix);
  queue.on('error', () => {});
  const monitor = new AlertMonitor({
    grants: deps.grants,
    serviceState: deps.serviceState,
    queue,
    secret,
    targets: config.webhookUrls.map(webhookTargetId),
    failingAfter: config.failingAlertAfter,
    logger: deps.logger,
  });
  return {
    monitor,
    close: async () => {
      await monitor.stop();
      await queue.close().catch(() => {});
    },
  };
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
  if (!deps.redis || config.webhookUrls.length === 0 || !deps.loaded.secrets.webhookSecret) return;
  const connection = connectRedis(deps.redis, {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    lazyConnect: true,
  });
  connection.on('error', () => {});
  const alerts = openCommandAlerts({ ...deps, connection });
  try {
    await alerts?.monitor.onConsentSaved(grant);
  } finally {
    await alerts?.close();
    connection.disconnect();
  }
}
