import type { Queue } from 'bullmq';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { GRANT_STATES } from '../grants/grant.js';
import type { ClientRepository, FleetStats, GrantRepository } from '../grants/ports.js';
import type { ClientPacer } from '../pacing/client-pacer.js';
import { keepAliveDeadline } from '../policy/refresh-timing.js';
import type { RefreshResult } from '../refresh/outcomes.js';
import type { RefreshAttempt, RefreshObserver } from '../refresh/refresh-observer.js';
import type { StorageGate } from '../store/storage-gate.js';
import { TIMED_OUT, withTimeout } from '../util/with-timeout.js';

/** Where the scrape-time gauges read from; bound once the service is up. */
export interface MetricsSources {
  grants: GrantRepository;
  clients: ClientRepository;
  queues: Array<{ name: string; queue: Queue }>;
  storage: StorageGate;
  /** Client-wide pacing: which clients are degraded, read from Redis at scrape time. */
  pacer: Pick<ClientPacer, 'condition'>;
  now?: () => number;
}

export type AlertDeliveryOutcome = 'delivered' | 'failed' | 'gave_up';

const QUEUE_STATES = ['waiting', 'delayed', 'active', 'failed'] as const;
/** A scrape must answer even while Redis is away; queue gauges then keep their last values. */
const QUEUE_COUNT_TIMEOUT_MS = 1000;

/**
 * The service's Prometheus metrics in a registry of its own (several services may share a process in
 * tests). Every label value comes from a small fixed set (client names are the operator's own
 * config): never a grant id, label, URL or token.
 */
export class Metrics implements RefreshObserver {
  readonly registry = new Registry();
  private sources?: MetricsSources;
  /** The store's aggregates, read once per scrape before the gauges collect. */
  private snapshot?: { fleet: FleetStats; keepAliveDeadline: number | undefined };

  private readonly attempts = new Counter({
    name: 'grantkeeper_refresh_attempts_total',
    help: 'Token refresh attempts made under a lease, by provider, trigger and outcome',
    labelNames: ['provider', 'trigger', 'outcome'] as const,
    registers: [this.registry],
  });

  private readonly duration = new Histogram({
    name: 'grantkeeper_refresh_duration_seconds',
    help: 'Time from claiming a lease to committing the outcome of a refresh',
    labelNames: ['provider', 'outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  private readonly lateness = new Histogram({
    name: 'grantkeeper_refresh_schedule_lateness_seconds',
    help: 'How long after its planned time a scheduled refresh job started',
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900],
    registers: [this.registry],
  });

  private readonly alertDeliveries = new Counter({
    name: 'grantkeeper_alert_deliveries_total',
    help: 'Webhook alert delivery attempts by event and outcome (gave_up: retries exhausted)',
    labelNames: ['event', 'outcome'] as const,
    registers: [this.registry],
  });

  private readonly warningsAhead = new Counter({
    name: 'grantkeeper_warnings_ahead_total',
    help: 'Warnings sent ahead of a deadline (grant.expiring, client.secret_expiring), once per window',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'grantkeeper_' });
    const metrics = this;
    new Gauge({
      name: 'grantkeeper_grants',
      help: 'Grants by state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const stats = metrics.fleet();
        if (!stats) return;
        for (const state of GRANT_STATES) this.set({ state }, 0);
        for (const { state, count } of stats.byState) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'grantkeeper_earliest_access_expiry_seconds',
      help: 'Seconds until the earliest access-token expiry among live eager grants (negative: overdue)',
      registers: [this.registry],
      collect() {
        const at = metrics.fleet()?.earliestEagerExpiry;
        if (at === null || at === undefined) this.reset();
        else this.set((at - metrics.now()) / 1000);
      },
    });
    new Gauge({
      name: 'grantkeeper_earliest_keepalive_deadline_seconds',
      help: "Seconds until the earliest live grant reaches its provider's keep-alive deadline",
      registers: [this.registry],
      collect() {
        const at = metrics.earliestKeepAliveDeadline();
        if (at === undefined) this.reset();
        else this.set((at - metrics.now()) / 1000);
      },
    });
    new Gauge({
      name: 'grantkeeper_grants_in_doubt',
      help: 'Grants whose last refresh request went out and got no answer: the provider may have rotated',
      registers: [this.registry],
      collect() {
        const stats = metrics.fleet();
        if (stats) this.set(stats.inDoubt);
      },
    });
    new Gauge({
      name: 'grantkeeper_refreshes_paused',
      help: '1 while the disk holding the database is full and no new refresh may start',
      registers: [this.registry],
      collect() {
        this.set(metrics.sources?.storage.paused ? 1 : 0);
      },
    });
    new Gauge({
      name: 'grantkeeper_queue_paused',
      help: '1 while a queue is paused (from the dashboard or grantkeeper queue pause): none of its jobs run',
      labelNames: ['queue'] as const,
      registers: [this.registry],
      async collect() {
        for (const { name, queue } of metrics.sources?.queues ?? []) {
          const paused = await withTimeout(
            queue.isPaused().catch(() => undefined),
            QUEUE_COUNT_TIMEOUT_MS,
          );
          if (paused !== undefined && paused !== TIMED_OUT) this.set({ queue: name }, paused ? 1 : 0);
        }
      },
    });
    const clientGauge = (state: 'degraded' | 'failing', name: string, help: string) =>
      new Gauge({
        name,
        help,
        labelNames: ['client'] as const,
        registers: [this.registry],
        async collect() {
          const sources = metrics.sources;
          if (!sources) return;
          for (const client of await sources.clients.list()) {
            const condition = await withTimeout(
              sources.pacer.condition(client.id).catch(() => undefined),
              QUEUE_COUNT_TIMEOUT_MS,
            );
            if (condition && condition !== TIMED_OUT) {
              this.set({ client: client.name }, condition.state === state ? 1 : 0);
            }
          }
        },
      });
    clientGauge(
      'degraded',
      'grantkeeper_client_degraded',
      '1 while a client is degraded (paused after a 429 or Retry-After, or its breaker open): its refreshes wait for one probe',
    );
    clientGauge(
      'failing',
      'grantkeeper_client_failing',
      "1 while the provider refuses a client's credentials (invalid_client, unauthorized_client): its grants stop as client_error without a request each",
    );
    new Gauge({
      name: 'grantkeeper_queue_jobs',
      help: 'Jobs in each BullMQ queue by state',
      labelNames: ['queue', 'state'] as const,
      registers: [this.registry],
      async collect() {
        for (const { name, queue } of metrics.sources?.queues ?? []) {
          const counts = await withTimeout(queue.getJobCounts(...QUEUE_STATES), QUEUE_COUNT_TIMEOUT_MS);
          if (counts === TIMED_OUT) continue;
          for (const state of QUEUE_STATES) this.set({ queue: name, state }, counts[state] ?? 0);
        }
      },
    });
  }

  bind(sources: MetricsSources): void {
    this.sources = sources;
  }

  onRefreshResult(attempt: RefreshAttempt, result: RefreshResult): void {
    const outcome = outcomeOf(result);
    this.attempts.inc({ provider: attempt.provider, trigger: attempt.trigger, outcome });
    this.duration.observe({ provider: attempt.provider, outcome }, attempt.durationMs / 1000);
  }

  observeLateness(seconds: number): void {
    this.lateness.observe(Math.max(0, seconds));
  }

  warnedAhead(event: string): void {
    this.warningsAhead.inc({ event });
  }

  alertDelivery(event: string, outcome: AlertDeliveryOutcome): void {
    this.alertDeliveries.inc({ event, outcome });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async render(): Promise<string> {
    this.snapshot = await this.readStore();
    return this.registry.metrics();
  }

  private now(): number {
    return (this.sources?.now ?? Date.now)();
  }

  private fleet(): FleetStats | undefined {
    return this.snapshot?.fleet;
  }

  private earliestKeepAliveDeadline(): number | undefined {
    return this.snapshot?.keepAliveDeadline;
  }

  /** A store that does not answer leaves the store gauges out of this scrape, not the whole page. */
  private async readStore(): Promise<Metrics['snapshot']> {
    const sources = this.sources;
    if (!sources) return undefined;
    try {
      const [fleet, clients] = await Promise.all([sources.grants.fleetStats(), sources.clients.list()]);
      const profiles = new Map(clients.map((c) => [c.id, c.profile]));
      let earliest: number | undefined;
      for (const { clientRef, usedAt } of fleet.oldestUseByClient) {
        const profile = profiles.get(clientRef);
        if (!profile) continue;
        const deadline = keepAliveDeadline(usedAt, profile.keepAliveIntervalSec);
        earliest = earliest === undefined ? deadline : Math.min(earliest, deadline);
      }
      return { fleet, keepAliveDeadline: earliest };
    } catch {
      return undefined;
    }
  }
}

function outcomeOf(result: RefreshResult): string {
  switch (result.status) {
    case 'retrying':
      return 'transient_error';
    case 'stopped':
      return result.grant.state;
    default:
      return result.status;
  }
}
