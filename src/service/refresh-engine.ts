import { type Tracer, trace } from '@opentelemetry/api';
import { createRefreshQueue, type RefreshQueue } from '../../jobs/refresh-queue.js';
import { QueueScheduler } from '../../jobs/refresh-scheduler.js';
import type { Config } from '../config/config-schema.js';
import type { GrantActionContext } from '../grants/actions/context.js';
import { NO_SCHEDULER, type RefreshScheduler } from '../grants/ports.js';
import type { Logger } from '../log/logger.js';
import { TokenClient } from '../oauth/token-client.js';
import { type ClientPacer, NO_PACER } from '../pacing/client-pacer.js';
import { RedisClientPacer } from '../pacing/redis-client-pacer.js';
import { logRedisErrors } from '../redis/connection-watch.js';
import type { RedisClient } from '../redis/redis-endpoint.js';
import { AccessTokenReader } from '../refresh/access-token-reader.js';
import { GrantRefresher } from '../refresh/grant-refresher.js';
import type { RefreshObserver } from '../refresh/refresh-observer.js';
import { RefreshPacing } from '../refresh/refresh-pacing.js';
import { DiskReserve } from '../store/disk-reserve.js';
import { StorageGate } from '../store/storage-gate.js';
import { Tracing } from '../telemetry/spans.js';
import type { StoreContext } from './store-context.js';

/** Connections per token endpoint beyond the worker's concurrency, for on-demand reads. */
const ON_DEMAND_CONNECTIONS = 32;

/** Everything that refreshes or reads tokens, for the service and for one-shot CLI commands alike. */
export interface RefreshEngine {
  tokenClient: TokenClient;
  refresher: GrantRefresher;
  reader: AccessTokenReader;
  /** Pauses refreshes while the disk holding the database is full. */
  storage: StorageGate;
  /** Starts the spans of refreshes and reads (no-op unless a tracer provider exports them). */
  tracing: Tracing;
  /** Client-wide pacing (NO_PACER without Redis): what `status` and the API show as degraded. */
  pacer: ClientPacer;
  /** Present when a Redis connection was given. */
  queue?: RefreshQueue;
  /** The queue's scheduler, or NO_SCHEDULER without Redis (the reconciler plans later). */
  scheduler: RefreshScheduler;
  leaseMs: number;
  inDoubtGraceMs: number;
  /** What the grant actions (retry, revoke, set mode…) run with in this process. */
  actions: GrantActionContext;
  close(): Promise<void>;
}

/** An engine given a Redis connection, which therefore has its queue. */
/**
 * What storing a consent needs of the store and this engine: a seed, a service grant, a consent
 * link's callback (and the demo) all store it the same way.
 */
export function consentDeps(engine: Pick<RefreshEngine, 'actions' | 'tokenClient'>) {
  const { grants, clients, scheduler, timing } = engine.actions;
  return { grants, clients, scheduler, timing, tokenClient: engine.tokenClient };
}

export type QueuedRefreshEngine = RefreshEngine & Required<Pick<RefreshEngine, 'queue'>>;

interface EngineOptions {
  connection?: RedisClient;
  observers?: RefreshObserver[];
  /**
   * The service's exporting tracer (startTracing). Without it spans go to the global API tracer:
   * the no-op one, unless a program embedding the library registered its own provider.
   */
  tracer?: Tracer;
}

export function createRefreshEngine(
  app: StoreContext,
  config: Config,
  logger: Logger,
  options: EngineOptions & { connection: RedisClient },
): QueuedRefreshEngine;
export function createRefreshEngine(
  app: StoreContext,
  config: Config,
  logger: Logger,
  options?: EngineOptions,
): RefreshEngine;
export function createRefreshEngine(
  app: StoreContext,
  config: Config,
  logger: Logger,
  options: EngineOptions = {},
): RefreshEngine {
  const requestTimeoutMs = config.requestTimeoutSeconds * 1000;
  const timing = config.refreshTiming;
  const inDoubtGraceMs = config.inDoubtGraceSeconds * 1000;
  const leaseMs = requestTimeoutMs + config.leaseMarginSeconds * 1000;
  // A kept-alive connection per refresh in flight, plus room for on-demand reads beside a full worker.
  const tokenClient = new TokenClient({
    timeoutMs: requestTimeoutMs,
    connections: config.concurrency + ON_DEMAND_CONNECTIONS,
  });
  // The reserve is room on the disk under a SQLite file; PostgreSQL's disk is not ours to reserve
  // (a full one refuses the claim itself, so no refresh starts).
  const reserveBytes = app.admin.kind === 'sqlite' ? Math.round(config.diskReserveMb * 1024 * 1024) : 0;
  const storage = new StorageGate({ reserve: new DiskReserve(app.dataDir, reserveBytes), logger });
  const tracing = new Tracing(options.tracer ?? trace.getTracer('grantkeeper'), {
    grantIdentity: config.traceGrantIds,
  });
  const observers = options.observers ?? [];
  // Pacing is shared through Redis; a one-shot command without it paces nothing.
  const pacer: ClientPacer = options.connection
    ? new RedisClientPacer(options.connection, {
        prefix: config.queuePrefix,
        probeTtlMs: leaseMs,
        // A rate slot is waited for after the fence, out of the request's time: a small part of it.
        maxInlineWaitMs: Math.min(1000, requestTimeoutMs / 10),
      })
    : NO_PACER;
  const pacing = new RefreshPacing({
    pacer,
    clients: app.clients,
    onTransition: (client, transition) => {
      for (const observer of observers) {
        try {
          observer.onClientTransition?.(client, transition);
        } catch (err) {
          logger.warn({ err: { message: (err as Error).message } }, 'a client observer failed');
        }
      }
    },
    logger,
  });
  const refresher = new GrantRefresher({
    grants: app.grants,
    clients: app.clients,
    tokenClient,
    timing,
    backoff: config.backoff,
    logger,
    storage,
    leaseMs,
    inDoubtGraceMs,
    unexplained: {
      count: config.reconsentAfterUnexplained.count,
      spanMs: config.reconsentAfterUnexplained.spanSeconds * 1000,
    },
    pacing,
    observers,
  });
  const queue = options.connection ? createRefreshQueue(options.connection, config.queuePrefix) : undefined;
  if (queue) logRedisErrors(queue, logger, 'refresh queue error');
  const scheduler = queue
    ? new QueueScheduler(queue, { horizonMs: config.scheduleHorizonSeconds * 1000 })
    : NO_SCHEDULER;
  const reader = new AccessTokenReader({
    grants: app.grants,
    refresher,
    scheduler,
    tracing,
    logger,
    waitLimitMs: leaseMs + 5000,
  });
  return {
    tokenClient,
    refresher,
    reader,
    storage,
    tracing,
    pacer,
    ...(queue ? { queue } : {}),
    scheduler,
    leaseMs,
    inDoubtGraceMs,
    actions: {
      grants: app.grants,
      clients: app.clients,
      reader,
      scheduler,
      tokenClient,
      timing,
      leaseMs,
      inDoubtGraceMs,
    },
    close: async () => {
      await queue?.close();
      await tokenClient.close();
    },
  };
}
