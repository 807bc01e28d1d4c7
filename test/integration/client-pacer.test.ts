import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientPacer } from '../../src/pacing/client-pacer.js';
import { gcraParams } from '../../src/pacing/rate-limit.js';
import { RedisClientPacer } from '../../src/pacing/redis-client-pacer.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { busiestSecond } from '../support/request-times.js';

const BREAKER = { failures: 4, windowMs: 10_000, basePauseMs: 400, maxPauseMs: 2000 };
const FAILING = { basePauseMs: 500, maxPauseMs: 5000 };
const RAMP = { ms: 10_000, startFraction: 0.1 };
/** A scheduled refresh of a client whose registration has not changed. */
const SCHEDULED = { operator: false, revision: 1 };

/**
 * Asks for a slot as the refresher does ("later" answers asked again then) and returns the time the
 * slot is for: when the reservation answered plus its wait. (Not when a timer then fired: under load
 * timers fire late and bunch, which says nothing about the pacer's spacing.)
 */
async function send(pacer: ClientPacer, client: string, limit: { requestsPerSecond: number; burst: number }) {
  for (;;) {
    const decision = await pacer.reserve(client, limit);
    if (decision.kind === 'go') return Date.now() + decision.waitMs;
    await sleep(Math.max(0, decision.retryAt - Date.now()));
  }
}

/** Two pacers on one Redis stand for two replicas. */
describe('client pacing shared through Redis', () => {
  let redis: PrivateRedis;
  let a: Redis;
  let b: Redis;
  let pacers: [RedisClientPacer, RedisClientPacer];

  beforeAll(async () => {
    redis = await startPrivateRedis();
    a = new Redis(redis.url);
    b = new Redis(redis.url);
    const options = { prefix: 'gk-test', probeTtlMs: 3000, breaker: BREAKER, failing: FAILING, ramp: RAMP };
    pacers = [new RedisClientPacer(a, options), new RedisClientPacer(b, options)];
  });

  afterAll(async () => {
    a?.disconnect();
    b?.disconnect();
    await redis?.stop();
  });

  it('a 50/s limit holds in every second across two replicas asking at once', async () => {
    const limit = { requestsPerSecond: 50, burst: 1 };
    const times = await Promise.all(
      Array.from({ length: 160 }, (_, i) => send(pacers[i % 2] as ClientPacer, 'c-rate', limit)),
    );
    expect(busiestSecond(times)).toBeLessThanOrEqual(50);
    // Paced, not starved: 160 requests at 50/s take a little over three seconds.
    expect(Math.max(...times) - Math.min(...times)).toBeLessThan(6000);
  }, 20_000);

  it('a burst lets that many go at once, then the rate', async () => {
    const limit = { requestsPerSecond: 10, burst: 5 };
    const first = await Promise.all(Array.from({ length: 5 }, () => pacers[0].reserve('c-burst', limit)));
    expect(first.every((d) => d.kind === 'go' && d.waitMs === 0)).toBe(true);
    const sixth = await pacers[1].reserve('c-burst', limit);
    expect(sixth.kind === 'go' && sixth.waitMs > 0).toBe(true);
  });

  it('a 429 pauses the client for every replica, alerts once, then lets one probe decide', async () => {
    const client = 'c-throttled';
    const reports = await Promise.all([
      pacers[0].report(client, 'g_one', { kind: 'throttled', pauseMs: 500 }, false),
      pacers[1].report(client, 'g_one', { kind: 'throttled', pauseMs: 500 }, false),
    ]);
    expect(reports.filter((r) => r?.kind === 'degraded')).toEqual([
      { kind: 'degraded', reason: 'throttled' },
    ]);
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'later', reason: 'paused' });
    expect(await pacers[0].condition(client)).toMatchObject({ state: 'degraded', reason: 'throttled' });

    await sleep(600);
    const asks = await Promise.all(
      [0, 1, 0, 1].map((i) => (pacers[i] as ClientPacer).admit(client, SCHEDULED)),
    );
    expect(asks.filter((d) => d.kind === 'go')).toEqual([{ kind: 'go', probe: true }]);
    expect(asks.filter((d) => d.kind === 'later' && d.reason === 'probing')).toHaveLength(3);

    // An answer to a request that was not the probe proves nothing; the probe's does.
    expect(await pacers[1].report(client, 'g_one', { kind: 'answered' }, false)).toBeUndefined();
    expect(await pacers[0].report(client, 'g_one', { kind: 'answered' }, true)).toEqual({
      kind: 'recovered',
      from: 'degraded',
    });
    expect(await pacers[1].report(client, 'g_one', { kind: 'answered' }, true)).toBeUndefined();
    expect(await pacers[1].condition(client)).toMatchObject({ state: 'ok' });
    expect(await pacers[1].admit(client, SCHEDULED)).toEqual({ kind: 'go', probe: false });
  });

  it('a burst of transient failures opens the breaker; a failed probe doubles the pause', async () => {
    const client = 'c-failing';
    const transient = { kind: 'transient' } as const;
    // One grant retrying on its own backoff is no burst, however often it fails.
    for (let i = 0; i < 2 * BREAKER.failures; i++) {
      expect(await pacers[i % 2]?.report(client, 'g_alone', transient, false)).toBeUndefined();
    }
    expect(await pacers[0].condition(client)).toEqual({ state: 'ok' });
    for (let i = 1; i < BREAKER.failures - 1; i++) {
      expect(await pacers[i % 2]?.report(client, `g_${i}`, transient, false)).toBeUndefined();
    }
    expect(await pacers[0].report(client, 'g_last', transient, false)).toEqual({
      kind: 'degraded',
      reason: 'failures',
    });
    const first = await pacers[0].condition(client);
    expect((first.pausedUntil ?? 0) - (first.since ?? 0)).toBe(BREAKER.basePauseMs);

    await sleep(BREAKER.basePauseMs + 50);
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'go', probe: true });
    expect(await pacers[1].report(client, 'g_one', transient, true)).toBeUndefined();
    const second = await pacers[0].condition(client);
    expect(second.state).toBe('degraded');
    expect((second.pausedUntil ?? 0) - Date.now()).toBeGreaterThan(BREAKER.basePauseMs);
  });

  it('a lost probe (its replica died) gives way to another after its time', async () => {
    const client = 'c-lost-probe';
    await pacers[0].report(client, 'g_one', { kind: 'throttled', pauseMs: 1 }, false);
    await sleep(20);
    expect(await pacers[0].admit(client, SCHEDULED)).toMatchObject({ kind: 'go', probe: true });
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'later', reason: 'probing' });
    await a.hset(`gk-test:pace:${client}`, 'probeExp', Date.now() - 1);
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'go', probe: true });
  });

  it('refused credentials make one failing incident for every replica; its grants are turned away', async () => {
    const client = 'c-refused';
    const refused = { kind: 'refused', code: 'invalid_client' } as const;
    const reports = await Promise.all([
      pacers[0].report(client, 'g_1', refused, false, 1),
      pacers[1].report(client, 'g_2', refused, false, 1),
      pacers[0].report(client, 'g_3', refused, false, 1),
    ]);
    expect(reports.filter((r) => r !== undefined)).toEqual([{ kind: 'failing', code: 'invalid_client' }]);
    expect(await pacers[1].condition(client)).toMatchObject({
      state: 'failing',
      reason: 'client_error',
      code: 'invalid_client',
    });
    // Every replica turns the client's scheduled refreshes away without a request.
    for (const pacer of pacers) {
      expect(await pacer.admit(client, SCHEDULED)).toMatchObject({ kind: 'refused', code: 'invalid_client' });
    }
    // A refused probe doubles the wait for the next one.
    const before = await pacers[0].condition(client);
    expect((before.pausedUntil ?? 0) - (before.since ?? 0)).toBe(FAILING.basePauseMs);
    await sleep(FAILING.basePauseMs + 50);
    expect(await pacers[0].admit(client, SCHEDULED)).toEqual({ kind: 'go', probe: true });
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'later', reason: 'probing' });
    expect(await pacers[0].report(client, 'g_4', refused, true, 1)).toBeUndefined();
    const after = await pacers[0].condition(client);
    expect((after.pausedUntil ?? 0) - Date.now()).toBeGreaterThan(FAILING.basePauseMs);
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'refused' });
  });

  it("an operator's retry, or a client changed since it was refused, probes at once; its answer recovers it", async () => {
    const client = 'c-fixed';
    await pacers[0].report(client, 'g_1', { kind: 'refused', code: 'unauthorized_client' }, false, 1);
    expect(await pacers[1].admit(client, SCHEDULED)).toMatchObject({ kind: 'refused' });
    // `client add` again moved the client's revision: the next request is the probe, others wait.
    const changed = { operator: false, revision: 2 };
    expect(await pacers[1].admit(client, changed)).toEqual({ kind: 'go', probe: true });
    expect(await pacers[0].admit(client, changed)).toMatchObject({ kind: 'later', reason: 'probing' });
    // Refused at the new revision too: pinned to it, so that revision is turned away again.
    await pacers[1].report(client, 'g_2', { kind: 'refused', code: 'unauthorized_client' }, true, 2);
    expect(await pacers[0].admit(client, changed)).toMatchObject({ kind: 'refused' });
    // An operator's retry is the probe, pause or not.
    expect(await pacers[0].admit(client, { operator: true, revision: 2 })).toEqual({
      kind: 'go',
      probe: true,
    });
    expect(await pacers[0].report(client, 'g_2', { kind: 'answered' }, true, 2)).toEqual({
      kind: 'recovered',
      from: 'failing',
    });
    expect(await pacers[1].report(client, 'g_3', { kind: 'answered' }, true, 2)).toBeUndefined();
    expect(await pacers[1].condition(client)).toMatchObject({ state: 'ok' });
    expect(await pacers[1].admit(client, SCHEDULED)).toEqual({ kind: 'go', probe: false });
  });

  it('after a recovery the rate ramps back from a fraction of the limit, without a burst, for every replica', async () => {
    const client = 'c-ramp';
    const limit = { requestsPerSecond: 10, burst: 5 };
    const { intervalMs } = gcraParams(limit);
    await pacers[0].report(client, 'g_1', { kind: 'throttled', pauseMs: 1 }, false);
    await sleep(10);
    expect(await pacers[0].admit(client, SCHEDULED)).toMatchObject({ kind: 'go', probe: true });
    expect(await pacers[0].report(client, 'g_1', { kind: 'answered' }, true)).toMatchObject({
      kind: 'recovered',
    });
    const ramping = await pacers[1].condition(client);
    expect((ramping.rampUntil ?? 0) - Date.now()).toBeGreaterThan(RAMP.ms / 2);
    // At the ramp's start a tenth of the rate: the slot after the first is ten intervals away (past
    // what is waited inline), where a burst of 5 would have let five go at once.
    expect(await pacers[1].reserve(client, limit)).toEqual({ kind: 'go', waitMs: 0 });
    const second = await pacers[0].reserve(client, limit);
    expect(second.kind).toBe('later');
    if (second.kind === 'later') expect(second.retryAt - Date.now()).toBeGreaterThan(5 * intervalMs);

    // Halfway (the ramp's start moved back 5 s), 55 % of the rate: about 1.8 intervals apart.
    const key = `gk-test:pace:${client}`;
    await a.hset(key, 'ramp', Date.now() - RAMP.ms / 2, 'tat', 0);
    const half = await Promise.all([pacers[0].reserve(client, limit), pacers[1].reserve(client, limit)]);
    const halfWaits = half.map((r) => (r.kind === 'go' ? r.waitMs : Number.NaN)).sort((x, y) => x - y);
    expect(halfWaits[0]).toBe(0);
    expect(halfWaits[1]).toBeGreaterThan(1.5 * intervalMs);
    expect(halfWaits[1]).toBeLessThan(2.5 * intervalMs);

    // Past the ramp: the full limit and its burst again.
    await a.hset(key, 'ramp', Date.now() - RAMP.ms - 1, 'tat', 0);
    const full = await Promise.all(
      Array.from({ length: 5 }, (_, i) => (pacers[i % 2] as ClientPacer).reserve(client, limit)),
    );
    expect(full.every((r) => r.kind === 'go' && r.waitMs === 0)).toBe(true);
    expect((await pacers[0].condition(client)).rampUntil).toBeUndefined();
  });
});
