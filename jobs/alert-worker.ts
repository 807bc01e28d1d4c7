import { type ConnectionOptions, type Job, type Queue, UnrecoverableError, Worker } from 'bullmq';
import type { ConsentLinkPayload } from '../src/consent/consent-links.js';
import { type Grant, isLive } from '../src/grants/grant.js';
import type { ClientRepository, GrantRepository } from '../src/grants/ports.js';
import type { Logger } from '../src/log/logger.js';
import type { Metrics } from '../src/metrics/metrics.js';
import {
  type AheadAlertEvent,
  alertStillHolds,
  type ClientAlertEvent,
  CONSENT_LINK_EVENTS,
  type GrantAlertEvent,
  isAheadEvent,
  isClientEvent,
  isQueueEvent,
  type QueueAlertEvent,
} from '../src/notify/alert-policy.js';
import {
  DELIVERY_HEADER,
  EVENT_HEADER,
  SIGNATURE_HEADER,
  signWebhook,
} from '../src/notify/webhook-signature.js';
import type { ClientCondition, ClientPacer } from '../src/pacing/client-pacer.js';
import { widestWindow } from '../src/policy/expiry-warnings.js';
import { grantHorizon } from '../src/policy/grant-horizon.js';
import { logRedisErrors } from '../src/redis/connection-watch.js';
import {
  ALERT_QUEUE_NAME,
  type AlertJobData,
  alertJobDataSchema,
  alertJobIsAuthentic,
  webhookTargetId,
} from './alert-queue.js';
import { DEFAULT_QUEUE_PREFIX } from './refresh-queue.js';

const DELIVERY_TIMEOUT_MS = 10_000;

export interface AlertWorkerOptions {
  connection: ConnectionOptions;
  prefix?: string;
  grants: GrantRepository;
  /** The queues a queue event may name, to check it against before sending. */
  queues: ReadonlyMap<string, Pick<Queue, 'isPaused'>>;
  /** Client events name a client: its registration and its pacing condition make the body. */
  clients: Pick<ClientRepository, 'get'>;
  /** The warning windows: a warning ahead is sent only while its deadline is still within one. */
  grantWindowsMs: readonly number[];
  secretWindowsMs: readonly number[];
  now?: () => number;
  pacer: Pick<ClientPacer, 'condition'>;
  webhookUrls: readonly string[];
  /**
   * A fresh consent link for a grant whose owner must act (CONSENT_LINK_EVENTS): absent, or
   * resolving to undefined, without a public URL.
   */
  consentLink?: (grant: Grant) => Promise<ConsentLinkPayload | undefined>;
  secret: string;
  metrics: Metrics;
  logger: Logger;
}

/** A conflict event this close to the alert's time is the one the alert was queued for. */
const CONFLICT_MATCH_MS = 60_000;

/**
 * Delivers alert jobs to their webhooks; a non-2xx answer fails the attempt and BullMQ retries it.
 * What is sent comes from the store: a job that was not made with the webhook secret, or whose
 * condition no longer holds, sends nothing.
 */
export function createAlertWorker(options: AlertWorkerOptions): Worker<AlertJobData, string> {
  const urls = new Map(options.webhookUrls.map((url) => [webhookTargetId(url), url]));
  const { logger, metrics } = options;
  const worker = new Worker<AlertJobData, string>(
    ALERT_QUEUE_NAME,
    async (job: Job<AlertJobData>) => {
      const parsed = alertJobDataSchema.safeParse(job.data);
      if (!parsed.success) throw new UnrecoverableError('malformed alert job data');
      const alert = parsed.data;
      if (!alertJobIsAuthentic(options.secret, alert)) {
        logger.warn(
          { event: alert.event, subject: alert.subject },
          'refused an alert job not made by grantkeeper',
        );
        throw new UnrecoverableError('alert job not signed by this service');
      }
      const url = urls.get(alert.target);
      // The webhook was removed from the config since: nobody left to tell.
      if (!url) return 'target_gone';
      const queue = options.queues.get(alert.subject);
      let body: string;
      if (isAheadEvent(alert.event)) {
        const ahead = await aheadAlertBody(alert, alert.event, options, job.id ?? '');
        if (!ahead) return 'no_longer_true';
        body = JSON.stringify(ahead);
      } else if (isQueueEvent(alert.event)) {
        const truth = queue !== undefined && (await queue.isPaused()) === (alert.event === 'queue.paused');
        if (!truth) return 'no_longer_true';
        body = JSON.stringify(queueAlertBody(alert, alert.event, job.id ?? ''));
      } else if (isClientEvent(alert.event)) {
        const client = await clientAlertBody(alert, alert.event, options, job.id ?? '');
        if (!client) return 'no_longer_true';
        body = JSON.stringify(client);
      } else {
        if (await foldedIntoClient(alert, alert.event, options)) return 'folded';
        if (!(await grantAlertHolds(alert, alert.event, options.grants))) return 'no_longer_true';
        body = JSON.stringify(await grantAlertBody(alert, alert.event, options, job.id ?? ''));
      }
      const res = await fetch(url, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'grantkeeper-webhook',
          [EVENT_HEADER]: alert.event,
          [DELIVERY_HEADER]: job.id ?? '',
          [SIGNATURE_HEADER]: signWebhook(options.secret, body, Math.floor(Date.now() / 1000)),
        },
        body,
      });
      await res.body?.cancel();
      if (res.status < 200 || res.status >= 300) throw new Error(`webhook answered HTTP ${res.status}`);
      metrics.alertDelivery(alert.event, 'delivered');
      return 'delivered';
    },
    { connection: options.connection, prefix: options.prefix ?? DEFAULT_QUEUE_PREFIX, concurrency: 4 },
  );
  worker.on('failed', (job, err) => {
    if (!job) return;
    const gaveUp = job.attemptsMade >= (job.opts.attempts ?? 1);
    metrics.alertDelivery(job.data.event, gaveUp ? 'gave_up' : 'failed');
    // The error is ours (status or network), never the URL: it may embed a secret.
    logger.warn(
      {
        event: job.data.event,
        subject: job.data.subject,
        target: job.data.target,
        attempt: job.attemptsMade,
        gaveUp,
        err: { message: err.message },
      },
      gaveUp ? 'alert delivery gave up' : 'alert delivery failed; will retry',
    );
  });
  // Connection trouble is logged once per outage by the connection's watch, not per retry here.
  logRedisErrors(worker, logger, 'alert worker error');
  return worker;
}

/**
 * A grant stopped as `client_error` while its client is failing is covered by the client's one
 * `client.failing`: the monitor normally queues nothing for it, and this catches the sweep's copy.
 */
async function foldedIntoClient(
  alert: AlertJobData,
  event: GrantAlertEvent,
  options: Pick<AlertWorkerOptions, 'grants' | 'pacer'>,
): Promise<boolean> {
  if (event !== 'grant.client_error') return false;
  const grant = (await options.grants.get(alert.subject))?.grant;
  if (!grant) return false;
  return (await options.pacer.condition(grant.clientRef)).state === 'failing';
}

async function grantAlertHolds(
  alert: AlertJobData,
  event: GrantAlertEvent,
  grants: GrantRepository,
): Promise<boolean> {
  const view = await grants.alertView(alert.subject);
  // A removed grant is still news for the alert that was queued before the removal.
  if (!view) return event !== 'grant.recovered';
  const events = event === 'grant.conflict' ? await grants.recentEvents(alert.subject, 20) : [];
  const conflictNear = (at: number) =>
    events.some((e) => e.outcome === 'conflict' && Math.abs(e.at - at) < CONFLICT_MATCH_MS);
  return alertStillHolds(event, view, conflictNear, alert.at);
}

async function grantAlertBody(
  alert: AlertJobData,
  event: GrantAlertEvent,
  options: Pick<AlertWorkerOptions, 'grants' | 'consentLink' | 'logger'>,
  deliveryId: string,
) {
  const grant = (await options.grants.get(alert.subject))?.grant;
  const link = grant && CONSENT_LINK_EVENTS.has(event) ? await consentLinkOf(grant, options) : undefined;
  return {
    id: deliveryId,
    type: alert.event,
    created_at: new Date(alert.at).toISOString(),
    grant: grant
      ? {
          id: grant.id,
          label: grant.label,
          state: grant.state,
          consecutive_failures: grant.consecutiveFailures,
          last_error: grant.lastError,
          last_error_at: grant.lastErrorAt === null ? null : new Date(grant.lastErrorAt).toISOString(),
        }
      : { id: alert.subject, state: 'removed' },
    ...(link ? { consent_link: link } : {}),
  };
}

const DAY_MS = 86_400_000;

/**
 * The body of a warning ahead, from the store at delivery time; undefined when it no longer holds
 * (the grant was re-consented or stopped, the secret rotated, the deadline moved out of every window).
 */
async function aheadAlertBody(
  alert: AlertJobData,
  event: AheadAlertEvent,
  options: Pick<
    AlertWorkerOptions,
    'grants' | 'clients' | 'grantWindowsMs' | 'secretWindowsMs' | 'now' | 'consentLink' | 'logger'
  >,
  deliveryId: string,
) {
  const now = (options.now ?? Date.now)();
  const iso = (at: number) => new Date(at).toISOString();
  const daysLeft = (at: number) => Math.max(0, Math.round(((at - now) / DAY_MS) * 10) / 10);
  const head = { id: deliveryId, type: event, created_at: iso(alert.at) };
  if (event === 'client.secret_expiring') {
    const client = await options.clients.get(alert.subject);
    const ends = client?.secret.expiresAt ?? null;
    if (!client || ends === null || ends - now > widestWindow(options.secretWindowsMs)) return undefined;
    return {
      ...head,
      client: { id: client.id, name: client.name, provider: client.profile.kind },
      secret: {
        expires_at: iso(ends),
        days_left: daysLeft(ends),
        previous_kept: client.secret.previous !== null,
      },
    };
  }
  const grant = (await options.grants.get(alert.subject))?.grant;
  if (!grant || !isLive(grant.state)) return undefined;
  const client = await options.clients.get(grant.clientRef);
  const { renewableUntil, needsConsentBy } = grantHorizon(grant, client?.profile.refreshIdleLimitSec);
  if (!needsConsentBy || needsConsentBy.at - now > widestWindow(options.grantWindowsMs)) return undefined;
  // Renewing before the deadline is a consent too: the owner gets the link that does it.
  const link = CONSENT_LINK_EVENTS.has(event) ? await consentLinkOf(grant, options) : undefined;
  return {
    ...head,
    grant: { id: grant.id, label: grant.label, state: grant.state, client: client?.name ?? null },
    needs_consent_by: iso(needsConsentBy.at),
    reason: needsConsentBy.reason,
    days_left: daysLeft(needsConsentBy.at),
    renewable_until: renewableUntil && iso(renewableUntil.at),
    ...(link ? { consent_link: link } : {}),
  };
}

/** A link that cannot be made (the db refused) leaves it out: the alert itself still goes. */
async function consentLinkOf(
  grant: Grant,
  options: Pick<AlertWorkerOptions, 'consentLink' | 'logger'>,
): Promise<ConsentLinkPayload | undefined> {
  try {
    return await options.consentLink?.(grant);
  } catch (err) {
    options.logger.warn(
      { grant: grant.id, err: { message: (err as Error).message } },
      'could not make a consent link for an alert; sending it without one',
    );
    return undefined;
  }
}

/** The body of a client event, or undefined when the client's condition has moved on since. */
async function clientAlertBody(
  alert: AlertJobData,
  event: ClientAlertEvent,
  options: Pick<AlertWorkerOptions, 'clients' | 'pacer' | 'grants'>,
  deliveryId: string,
) {
  const [client, condition] = await Promise.all([
    options.clients.get(alert.subject),
    options.pacer.condition(alert.subject),
  ]);
  if (condition.state !== CLIENT_EVENT_STATE[event]) return undefined;
  const iso = (at: number | undefined) => (at === undefined ? null : new Date(at).toISOString());
  // A credentials incident says how many grants it covers (and, once over, how many await a retry).
  const grants = event === 'client.degraded' ? {} : { grants: await clientGrantCounts(alert, options) };
  return {
    id: deliveryId,
    type: event,
    created_at: new Date(alert.at).toISOString(),
    client: {
      id: alert.subject,
      name: client?.name ?? null,
      provider: client?.profile.kind ?? null,
      state: condition.state,
      reason: condition.reason ?? null,
      error_code: condition.code ?? null,
      degraded_since: iso(condition.since),
      paused_until: iso(condition.pausedUntil),
      ...grants,
    },
  };
}

/** The condition each client event reports: a job whose client has moved on since sends nothing. */
const CLIENT_EVENT_STATE: Record<ClientAlertEvent, ClientCondition['state']> = {
  'client.degraded': 'degraded',
  'client.failing': 'failing',
  'client.recovered': 'ok',
};

/** The client's grants in all, and those stopped as client_error, counted by the store. */
async function clientGrantCounts(alert: AlertJobData, options: Pick<AlertWorkerOptions, 'grants'>) {
  const { counts } = await options.grants.fleetSummary({
    grantIds: null,
    aheadFrom: alert.at,
    behindFrom: alert.at,
    bucketMs: 3_600_000,
    buckets: 1,
    keepAlive: [],
    deadlineHorizonMs: 0,
  });
  const mine = counts.filter((c) => c.clientRef === alert.subject);
  return {
    total: mine.reduce((n, c) => n + c.count, 0),
    client_error: mine.find((c) => c.state === 'client_error')?.count ?? 0,
  };
}

function queueAlertBody(alert: AlertJobData, event: QueueAlertEvent, deliveryId: string) {
  return {
    id: deliveryId,
    type: event,
    created_at: new Date(alert.at).toISOString(),
    queue: { name: alert.subject, paused: event === 'queue.paused' },
  };
}
