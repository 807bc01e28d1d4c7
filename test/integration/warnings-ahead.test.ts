import { PassThrough } from 'node:stream';
import type { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertMonitor } from '../../jobs/alert-monitor.js';
import { type AlertQueue, createAlertQueue, webhookTargetId } from '../../jobs/alert-queue.js';
import { createAlertWorker } from '../../jobs/alert-worker.js';
import { consentLinkDeps, consentLinkPayload } from '../../src/consent/consent-links.js';
import { seedGrant } from '../../src/consent/seed-grant.js';
import { NO_SCHEDULER } from '../../src/grants/ports.js';
import { createLogger } from '../../src/log/logger.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { SIGNATURE_HEADER, verifyWebhookSignature } from '../../src/notify/webhook-signature.js';
import { NO_PACER } from '../../src/pacing/client-pacer.js';
import {
  DEFAULT_GRANT_WARNING_WINDOWS_MS,
  DEFAULT_SECRET_WARNING_WINDOWS_MS,
} from '../../src/policy/expiry-warnings.js';
import { DEFAULT_REFRESH_TIMING } from '../../src/policy/refresh-timing.js';
import { waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { type RefresherRig, startRefresherRig } from '../support/refresher.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const DAY = 86_400_000;
const SECRET = 'webhook-secret-for-warnings';

/**
 * Warnings ahead against a real SQLite store, a real Redis alert queue and its worker, with the
 * token answers from the fault endpoint: the clock the monitor and worker read is moved, the
 * store's and Redis's are not.
 */
const PUBLIC_URL = 'https://gk.example';

describe('warnings ahead: grant.expiring and client.secret_expiring', () => {
  let endpoint: FaultEndpoint;
  let rig: RefresherRig;
  let redis: PrivateRedis;
  let queue: AlertQueue;
  let worker: Worker;
  let receiver: WebhookReceiver;
  const metrics = new Metrics();
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const now = () => Date.now() + rig.clock.offset;
  /** Two monitors on one store, as two replicas run them. */
  const monitors: AlertMonitor[] = [];

  beforeAll(async () => {
    endpoint = await startFaultEndpoint();
    rig = await startRefresherRig(endpoint);
    redis = await startPrivateRedis();
    receiver = await startWebhookReceiver();
    const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
    queue = createAlertQueue(connection);
    const ahead = {
      clients: rig.clients,
      grantWindowsMs: DEFAULT_GRANT_WARNING_WINDOWS_MS,
      secretWindowsMs: DEFAULT_SECRET_WARNING_WINDOWS_MS,
      metrics,
    };
    for (let i = 0; i < 2; i++) {
      monitors.push(
        new AlertMonitor({
          grants: rig.grants,
          serviceState: rig.store.serviceState,
          queue,
          secret: SECRET,
          targets: [webhookTargetId(receiver.url)],
          failingAfter: 3,
          logger,
          now,
          ahead,
        }),
      );
    }
    worker = createAlertWorker({
      connection,
      grants: rig.grants,
      queues: new Map(),
      clients: rig.clients,
      pacer: NO_PACER,
      webhookUrls: [receiver.url],
      secret: SECRET,
      grantWindowsMs: ahead.grantWindowsMs,
      secretWindowsMs: ahead.secretWindowsMs,
      consentLink: (grant) => consentLinkPayload(consentLinkDeps(rig.store, PUBLIC_URL), grant),
      metrics,
      logger,
      now,
    });
  });

  afterAll(async () => {
    await worker?.close();
    await queue?.close();
    await receiver?.close();
    await redis?.stop();
    await rig?.close();
    await endpoint?.close();
  });

  const sweepBoth = () => Promise.all(monitors.map((m) => m.sweep()));
  const received = (type: string) => receiver.received.filter((w) => w.json.type === type);
  /** Every queued alert has been delivered or dropped: nothing is left to arrive. */
  const drained = () =>
    waitFor(async () => {
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return Object.values(c).every((n) => n === 0);
    }, 'the alert queue to drain');

  it('refresh_token_expires_in sets the hard end; one warning at 7 days, one at 1 day, none after re-consent', async () => {
    const seeded = await rig.seed();
    endpoint.push({ type: 'rotate', refreshTokenExpiresIn: 10 * 86_400 });
    const sentFrom = now();
    const result = await rig.refresher.refresh(seeded.id, 0, 'schedule');
    expect(result.status).toBe('refreshed');
    const refreshed = (await rig.grants.get(seeded.id))!.grant;
    expect(refreshed.refreshExpiresReason).toBe('refresh_token_expires_in');
    expect(refreshed.refreshExpiresAt).toBeGreaterThanOrEqual(sentFrom + 10 * DAY);
    expect(refreshed.refreshExpiresAt).toBeLessThanOrEqual(now() + 10 * DAY);
    const hardEnd = refreshed.refreshExpiresAt!;

    // 8 days out: nothing yet.
    rig.clock.offset = hardEnd - 8 * DAY - Date.now();
    await sweepBoth();
    await drained();
    expect(received('grant.expiring')).toHaveLength(0);

    // Inside the 7-day window: both replicas sweep, twice; exactly one webhook.
    rig.clock.offset = hardEnd - 6.5 * DAY - Date.now();
    await sweepBoth();
    await sweepBoth();
    await waitFor(() => received('grant.expiring').length === 1, 'the 7-day warning');
    await drained();
    expect(received('grant.expiring')).toHaveLength(1);
    const week = received('grant.expiring')[0]!;
    expect(verifyWebhookSignature(SECRET, week.headers[SIGNATURE_HEADER] as string, week.body)).toBe(true);
    expect(week.json).toMatchObject({
      grant: { id: seeded.id, label: seeded.label, state: 'active' },
      needs_consent_by: new Date(hardEnd).toISOString(),
      renewable_until: new Date(hardEnd).toISOString(),
      reason: 'refresh_token_expires_in',
      days_left: 6.5,
      // The owner can renew ahead from the webhook: a fresh one-time link for this grant's label.
      consent_link: { url: expect.stringMatching(/^https:\/\/gk\.example\/connect\//), label: seeded.label },
    });

    // Still inside 7 days, not yet 1: nothing more.
    rig.clock.offset = hardEnd - 2 * DAY - Date.now();
    await sweepBoth();
    await drained();
    expect(received('grant.expiring')).toHaveLength(1);

    // The 1-day mark: one more, once.
    rig.clock.offset = hardEnd - 0.5 * DAY - Date.now();
    await sweepBoth();
    await sweepBoth();
    await waitFor(() => received('grant.expiring').length === 2, 'the 1-day warning');
    await drained();
    expect(received('grant.expiring')).toHaveLength(2);
    expect(received('grant.expiring')[1]!.json).toMatchObject({ grant: { id: seeded.id }, days_left: 0.5 });

    // A re-consent of the label (a pasted code) brings a new refresh token living 90 days.
    endpoint.push({ type: 'rotate', refreshTokenExpiresIn: 90 * 86_400 });
    const input = new PassThrough();
    input.end('any-code\n');
    const reconsented = await seedGrant(
      {
        grants: rig.grants,
        clients: rig.clients,
        tokenClient: rig.tokenClient,
        timing: DEFAULT_REFRESH_TIMING,
        scheduler: NO_SCHEDULER,
        io: { messages: new PassThrough(), input },
        now,
      },
      { client: 'c', label: seeded.label, mode: 'manual', timeoutMs: 5000 },
    );
    expect(reconsented).toMatchObject({ replaced: true, grant: { id: seeded.id } });
    expect(reconsented.grant.refreshExpiresAt).toBeGreaterThan(now() + 89 * DAY);
    rig.clock.offset += 0.1 * DAY;
    await sweepBoth();
    await drained();
    expect(received('grant.expiring')).toHaveLength(2);
    expect(
      logs.filter((l) => l.msg?.toString().startsWith('grant will need a new consent soon')),
    ).toHaveLength(2);
  });

  it("a preset's fixed limit sets the hard end at consent, and its first warning is the narrowest window", async () => {
    rig.clock.offset = 0;
    const c = (await rig.clients.findByName('c'))!;
    await rig.clients.upsert({
      name: 'spa',
      profile: { ...c.profile, refreshTokenLifetime: { seconds: 86_400, reason: 'Microsoft SPA clients' } },
      clientId: 'spa-id',
      authMethod: 'none',
      scopes: ['openid'],
      now: Date.now(),
    });
    const input = new PassThrough();
    input.end('spa-code\n');
    const before = now();
    const { grant } = await seedGrant(
      {
        grants: rig.grants,
        clients: rig.clients,
        tokenClient: rig.tokenClient,
        timing: DEFAULT_REFRESH_TIMING,
        scheduler: NO_SCHEDULER,
        io: { messages: new PassThrough(), input },
        now,
      },
      { client: 'spa', label: 'spa-user', mode: 'manual', timeoutMs: 5000 },
    );
    expect(grant.refreshExpiresReason).toBe('Microsoft SPA clients');
    expect(grant.refreshExpiresAt).toBeGreaterThanOrEqual(before + DAY);
    expect(grant.refreshExpiresAt).toBeLessThanOrEqual(now() + DAY);
    const from = received('grant.expiring').length;
    await sweepBoth();
    await waitFor(() => received('grant.expiring').length === from + 1, 'the SPA grant warning');
    await drained();
    expect(
      received('grant.expiring')
        .slice(from)
        .map((w) => w.json.grant.id),
    ).toEqual([grant.id]);
    expect(received('grant.expiring').at(-1)!.json).toMatchObject({ reason: 'Microsoft SPA clients' });
    // Less than a day left at consent: the 1-day warning, not a stale 7-day one as well.
    expect(
      logs.filter((l) => l.grantId === grant.id && l.event === 'grant.expiring').map((l) => l.windowDays),
    ).toEqual([1]);
  });

  it('a client secret ending within 30 days is warned once, until it is rotated', async () => {
    rig.clock.offset = 0;
    const client = (await rig.clients.findByName('c'))!;
    const ends = Date.now() + 20 * DAY;
    await rig.clients.upsert({
      name: 'c',
      profile: client.profile,
      clientId: client.clientId,
      clientSecret: 'client-secret-value',
      secretExpiresAt: ends,
      authMethod: client.authMethod,
      scopes: client.scopes,
      now: Date.now(),
    });
    await sweepBoth();
    await sweepBoth();
    await waitFor(() => received('client.secret_expiring').length === 1, 'the secret warning');
    await drained();
    expect(received('client.secret_expiring')).toHaveLength(1);
    expect(received('client.secret_expiring')[0]!.json).toMatchObject({
      client: { id: client.id, name: 'c' },
      secret: { expires_at: new Date(ends).toISOString(), previous_kept: false },
    });
    // Rotated to a secret ending in a year: no more warnings.
    await rig.clients.rotateSecret(client.id, {
      secret: 'next',
      expiresAt: Date.now() + 365 * DAY,
      now: Date.now(),
    });
    await sweepBoth();
    await drained();
    expect(received('client.secret_expiring')).toHaveLength(1);
    const scrape = await metrics.render();
    expect(scrape).toMatch(/grantkeeper_warnings_ahead_total\{event="grant.expiring"\} 3/);
    expect(scrape).toMatch(/grantkeeper_warnings_ahead_total\{event="client.secret_expiring"\} 1/);
  });
});
