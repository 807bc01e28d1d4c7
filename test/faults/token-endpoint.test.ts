import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../src/grants/grant.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  sleep,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { envSeconds, soak } from './support.js';

/** CI scales the 30 s Retry-After down; GK_SOAK=1 uses the real figure. */
const RETRY_AFTER_SEC = envSeconds('GK_RETRY_AFTER_SECONDS', soak ? 30 : 3);
const GRANTS = 6;

/**
 * A misbehaving provider, several grants at once: whatever it does, requests stay bounded (no
 * tight retry loop) and every grant recovers when it does.
 */
describe('a misbehaving token endpoint never causes a retry storm', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let clientRef: string;

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: testKey(),
      // Backoff as in production, scaled: 500 ms doubling to 4 s.
      // Junk 2xx answers leave grants in doubt: the 10-minute grace is scaled to 2 s.
      config: {
        requestTimeoutSeconds: 10,
        shutdownGraceSeconds: 20,
        inDoubtGraceSeconds: 2,
        backoff: { baseMs: 500, maxMs: 4000 },
      },
    });
    clientRef = (
      await addClient(engine, testProfile(endpoint.url), {
        clientId: 'gk',
        clientSecret: 'faults-secret',
      })
    ).id;
  }, 30_000);

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const grants = () => engine.service.app.grants;

  /** The refresh token each grant was seeded with, by grant id. */
  const seededRefreshTokens = new Map<string, string>();

  async function seedDue(count: number): Promise<Grant[]> {
    return Promise.all(
      Array.from({ length: count }, async () => {
        const minted = endpoint.mintGrant();
        const grant = await seedGrant(engine, clientRef, testProfile(endpoint.url), {
          ...minted,
          expiresIn: 0,
        });
        seededRefreshTokens.set(grant.id, minted.refreshToken);
        return grant;
      }),
    );
  }

  async function allRecovered(seeded: Grant[], timeoutMs: number): Promise<void> {
    await waitFor(
      async () =>
        (await Promise.all(seeded.map(async (g) => (await grants().get(g.id))?.grant))).every(
          (g) => g?.version === 1 && g?.state === 'active',
        ),
      'every grant to recover',
      timeoutMs,
      100,
    );
  }

  const requestsFor = (seeded: Grant[], since: number) => {
    const tokens = new Set(seeded.map((g) => seededRefreshTokens.get(g.id)!));
    return endpoint.requests.filter((r) => r.at >= since && tokens.has(r.form.refresh_token ?? ''));
  };

  it('a slow provider (5 s per answer) is waited for, once per grant', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: 5000 });
    const since = Date.now();
    const seeded = await seedDue(GRANTS);
    await allRecovered(seeded, 20_000);
    expect(requestsFor(seeded, since)).toHaveLength(GRANTS);
    expect(endpoint.reuseDetections).toBe(0);
  }, 30_000);

  it('a flapping provider (every other answer 503) costs at most a few requests per grant', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    const flaps = Array.from({ length: 2 * GRANTS }, (_, i) =>
      i % 2 === 0
        ? ({ type: 'status', status: 503, body: 'busy' } as const)
        : ({ type: 'rotate', expiresIn: 3600 } as const),
    );
    endpoint.push(...flaps);
    const since = Date.now();
    const seeded = await seedDue(GRANTS);
    await allRecovered(seeded, 20_000);
    const sent = requestsFor(seeded, since);
    console.info(`[faults] flapping provider: ${sent.length} requests for ${GRANTS} grants`);
    // Each grant needs one success; with half the answers failing, about two requests each.
    expect(sent.length).toBeLessThanOrEqual(3 * GRANTS);
    expect(endpoint.reuseDetections).toBe(0);
  }, 30_000);

  it(`a rate-limiting provider (429, Retry-After ${RETRY_AFTER_SEC} s) gets nothing more from the client until the time is up`, async () => {
    endpoint.setDefault({
      type: 'status',
      status: 429,
      json: { error: 'rate_limited' },
      headers: { 'retry-after': String(RETRY_AFTER_SEC) },
    });
    const since = Date.now();
    const [first] = (await seedDue(1)) as [Grant];
    await waitFor(
      async () => (await grants().get(first.id))?.grant.consecutiveFailures === 1,
      "the first grant's 429",
    );
    await sleep(200);
    // Grants due after the first 429 are held by the client's pause: they send nothing.
    const seeded = [first, ...(await seedDue(GRANTS - 1))];
    await sleep(RETRY_AFTER_SEC * 1000 - 1000);
    const during = requestsFor(seeded, since);
    expect(during).toHaveLength(1);
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    await allRecovered(seeded, (RETRY_AFTER_SEC + 10) * 1000);
    const sent = requestsFor(seeded, since);
    const retries = sent.slice(during.length);
    // Then one success per grant, the probe first: nothing was sent in vain.
    expect(retries).toHaveLength(GRANTS);
    const firstRetry = Math.min(...retries.map((r) => r.at));
    expect(firstRetry - since).toBeGreaterThanOrEqual(RETRY_AFTER_SEC * 1000);
  }, 60_000);

  it('junk answers (truncated JSON, a 200 without access_token) wait in doubt and recover', async () => {
    endpoint.push(
      ...Array.from({ length: GRANTS }, () => ({ type: 'truncated' }) as const),
      ...Array.from(
        { length: GRANTS },
        () => ({ type: 'status', status: 200, json: { token_type: 'bearer' } }) as const,
      ),
    );
    const since = Date.now();
    const seeded = await seedDue(GRANTS);
    await allRecovered(seeded, 20_000);
    const sent = requestsFor(seeded, since);
    const minutes = (Date.now() - since) / 60_000;
    console.info(`[faults] junk answers: ${sent.length} requests, ${Math.round(sent.length / minutes)}/min`);
    // Two junk answers and one success per grant; anything more would be a loop.
    expect(sent).toHaveLength(3 * GRANTS);
  }, 30_000);
});
