import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientPacer } from '../../src/pacing/client-pacer.js';
import { RedisClientPacer } from '../../src/pacing/redis-client-pacer.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { busiestSecond } from '../support/request-times.js';

const BREAKER = { failures: 4, windowMs: 10_000, basePauseMs: 400, maxPauseMs: 2000 };

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
    const options = { prefix: 'gk-test', probeTtlMs: 3000, breaker: BREAKER };
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
    expect(await pacers[1].admit(client)).toMatchObject({ kind: 'later', reason: 'paused' });
    expect(await pacers[0].condition(client)).toMatchObject({ state: 'degraded', reason: 'throttled' });

    await sleep(600);
    const asks = await Promise.all([0, 1, 0, 1].map((i) => (pacers[i] as ClientPacer).admit(client)));
    expect(asks.filter((d) => d.kind === 'go')).toEqual([{ kind: 'go', probe: true }]);
    expect(asks.filter((d) => d.kind === 'later' && d.reason === 'probing')).toHaveLength(3);

    // An answer to a request that was not the probe proves nothing; the probe's does.
    expect(await pacers[1].report(client, 'g_one', { kind: 'answered' }, false)).toBeUndefined();
    expect(await pacers[0].report(client, 'g_one', { kind: 'answered' }, true)).toEqual({
      kind: 'recovered',
    });
    expect(await pacers[1].report(client, 'g_one', { kind: 'answered' }, true)).toBeUndefined();
    expect(await pacers[1].condition(client)).toEqual({ state: 'ok' });
    expect(await pacers[1].admit(client)).toEqual({ kind: 'go', probe: false });
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
    expect(await pacers[1].admit(client)).toMatchObject({ kind: 'go', probe: true });
    expect(await pacers[1].report(client, 'g_one', transient, true)).toBeUndefined();
    const second = await pacers[0].condition(client);
    expect(second.state).toBe('degraded');
    expect((second.pausedUntil ?? 0) - Date.now()).toBeGreaterThan(BREAKER.basePauseMs);
  });

  it('a lost probe (its replica died) gives way to another after its time', async () => {
    const client = 'c-lost-probe';
    await pacers[0].report(client, 'g_one', { kind: 'throttled', pauseMs: 1 }, false);
    await sleep(20);
    expect(await pacers[0].admit(client)).toMatchObject({ kind: 'go', probe: true });
    expect(await pacers[1].admit(client)).toMatchObject({ kind: 'later', reason: 'probing' });
    await a.hset(`gk-test:pace:${client}`, 'probeExp', Date.now() - 1);
    expect(await pacers[1].admit(client)).toMatchObject({ kind: 'go', probe: true });
  });
});
