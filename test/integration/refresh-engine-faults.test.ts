import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { refreshJobId } from '../../jobs/refresh-queue.js';
import { retryGrant } from '../../src/grants/actions/retry.js';
import type { Grant, StoredGrant } from '../../src/grants/grant.js';
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
import { type Behaviour, type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets, readDbFiles } from '../support/secret-scan.js';

const CLIENT_SECRET = `gk-test-secret-${Math.random().toString(36).slice(2)}`;
/** Short, so the suite sees the in-doubt wait end; the default is 10 minutes. */
const IN_DOUBT_GRACE_S = 3;

describe('refresh engine against a fault-injecting token endpoint', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let clientRef: string;
  let harmlessReplayClientRef: string;
  const profile = () => testProfile(endpoint.url, { defaultAccessLifetimeSec: 1800 });
  /** A provider whose rotated-out refresh tokens stay valid (Microsoft): a lost answer retries at once. */
  const harmlessReplayProfile = () =>
    testProfile(endpoint.url, { defaultAccessLifetimeSec: 1800, oldRefreshTokensStayValid: true });

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: testKey(),
      config: { requestTimeoutSeconds: 1, inDoubtGraceSeconds: IN_DOUBT_GRACE_S },
    });
    clientRef = (await addClient(engine, profile(), { clientId: 'gk-client', clientSecret: CLIENT_SECRET }))
      .id;
    harmlessReplayClientRef = (
      await addClient(engine, harmlessReplayProfile(), {
        name: 'replay-harmless',
        clientId: 'gk-client',
        clientSecret: CLIENT_SECRET,
      })
    ).id;
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  beforeEach(() => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
  });

  const grants = () => engine.service.app.grants;
  const requestsFor = (refreshToken: string) =>
    endpoint.requests.filter((r) => r.form.refresh_token === refreshToken).length;

  /** Recent events as the old default showed them: the newest 20. */
  const recentEvents = (id: string) => grants().recentEvents(id, 20);

  /**
   * A grant due now, refreshed by the worker once it is seeded, with the tokens it was seeded with
   * (the worker may already have rotated them by the time the store is read again).
   */
  async function seedDueGrant(
    opts: { replayHarmless?: boolean } = {},
  ): Promise<{ seeded: Grant; tokens: { accessToken: string; refreshToken: string } }> {
    const minted = endpoint.mintGrant();
    const seeded = opts.replayHarmless
      ? await seedGrant(engine, harmlessReplayClientRef, harmlessReplayProfile(), { ...minted, expiresIn: 0 })
      : await seedGrant(engine, clientRef, profile(), { ...minted, expiresIn: 0 });
    return { seeded, tokens: minted };
  }

  async function waitForVersion(id: string, version: number, timeoutMs = 15_000): Promise<StoredGrant> {
    return waitFor(
      async () => {
        const g = await grants().get(id);
        return g && g.grant.version >= version ? g : undefined;
      },
      `grant ${id} to reach version ${version}`,
      timeoutMs,
    );
  }

  it('refreshes a due grant, rotates its refresh token and plans the next run ahead of expiry', async () => {
    const { seeded, tokens: oldTokens } = await seedDueGrant();
    const { grant: refreshed, tokens } = await waitForVersion(seeded.id, 1);
    expect(tokens.refreshToken()).not.toBe(oldTokens.refreshToken);
    expect(endpoint.isAccessTokenValid(tokens.accessToken())).toBe(true);
    expect(refreshed.state).toBe('active');
    expect(refreshed.accessExpiresAt - refreshed.refreshTokenUsedAt).toBe(3600_000);
    expect(refreshed.nextRefreshAt).toBeLessThan(refreshed.accessExpiresAt);
    // Lead: 30 % of an hour capped at 10 min, plus up to 50 % jitter.
    expect(refreshed.accessExpiresAt - refreshed.nextRefreshAt).toBeGreaterThanOrEqual(600_000);
    expect(refreshed.accessExpiresAt - refreshed.nextRefreshAt).toBeLessThanOrEqual(900_000);
    const events = await recentEvents(seeded.id);
    expect(events[0]).toMatchObject({ outcome: 'refreshed', rotated: true, version: 0 });
    // The wire: HTTP Basic with the sealed client secret, refresh_token grant.
    const sent = endpoint.requests.find((r) => r.form.refresh_token === oldTokens.refreshToken);
    expect(sent?.form.grant_type).toBe('refresh_token');
    expect(sent?.headers.authorization).toBe(
      `Basic ${Buffer.from(`gk-client:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`,
    );
    // The next job waits in Redis under the plan-derived id (queued just after the commit).
    const nextJob = refreshJobId(seeded.id, 1, refreshed.nextRefreshAt);
    await waitFor(
      async () => (await engine.service.engine.queue.getJobState(nextJob)) === 'delayed',
      'the next job delayed in Redis',
      5_000,
    );
  });

  const answered = [
    ['a 500', { type: 'status', status: 500, json: { error: 'server_error' } }],
    [
      'a 503 with an HTML body',
      { type: 'status', status: 503, body: '<html>down</html>', contentType: 'text/html' },
    ],
  ] as const;
  /** Faults after which the provider may have rotated: the answer was lost or unreadable. */
  const lost = [
    [
      'a 200 with an HTML body',
      { type: 'status', status: 200, body: '<html>hi</html>', contentType: 'text/html' },
    ],
    ['a hang past the request timeout', { type: 'hang' }],
    ['a 10 MB body', { type: 'huge', bytes: 10 * 1024 * 1024 }],
    ['truncated JSON', { type: 'truncated' }],
    ['a 200 without access_token', { type: 'status', status: 200, json: { token_type: 'bearer' } }],
  ] as const;

  async function failTwiceThenRecover(fault: Behaviour, opts: { replayHarmless?: boolean } = {}) {
    endpoint.push(fault, fault);
    const {
      seeded,
      tokens: { refreshToken },
    } = await seedDueGrant(opts);
    const failing = await waitFor(async () => {
      const g = (await grants().get(seeded.id))?.grant;
      return g?.state === 'failing' && g.consecutiveFailures >= 1 ? g : undefined;
    }, 'the grant to show as failing');
    expect(failing.lastError).toBeTruthy();
    expect(failing.lastError).not.toContain(refreshToken);
    const { grant: recovered } = await waitForVersion(seeded.id, 1);
    expect(recovered.state).toBe('active');
    expect(recovered.consecutiveFailures).toBe(0);
    expect(recovered.leaseSentAt).toBeNull();
    // Two failures then one success, each a separate attempt with the same (unspent) token.
    expect(requestsFor(refreshToken)).toBe(3);
    const times = endpoint.requests.filter((r) => r.form.refresh_token === refreshToken).map((r) => r.at);
    const outcomes = (await recentEvents(seeded.id)).map((e) => e.outcome).reverse();
    return { failing, outcomes, gaps: times.slice(1).map((t, i) => t - (times[i] ?? 0)) };
  }

  it.each(answered)('retries after %s, shows the grant failing, and recovers', async (_name, fault) => {
    const { outcomes } = await failTwiceThenRecover(fault);
    expect(outcomes).toEqual(['transient_error', 'transient_error', 'refreshed']);
  });

  it.each(lost)(
    'after %s, holds the grant in doubt for the grace, never sooner, then recovers',
    async (_name, fault) => {
      const { failing, outcomes, gaps } = await failTwiceThenRecover(fault);
      expect(failing.lastError).toMatch(/in doubt/);
      expect(outcomes).toEqual(['in_doubt', 'in_doubt', 'refreshed']);
      // Nobody sent the refresh token again before the grace had passed since the last send.
      for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(IN_DOUBT_GRACE_S * 1000);
    },
  );

  it.each(lost)(
    'after %s, retries at once where a replay is harmless (old refresh tokens stay valid)',
    async (_name, fault) => {
      const { outcomes, gaps } = await failTwiceThenRecover(fault, { replayHarmless: true });
      expect(outcomes).toEqual(['transient_error', 'transient_error', 'refreshed']);
      for (const gap of gaps) expect(gap).toBeLessThan(IN_DOUBT_GRACE_S * 1000);
    },
  );

  it('backs off exponentially between transient failures instead of looping', async () => {
    endpoint.push(
      ...Array.from({ length: 4 }, () => ({ type: 'status', status: 502, body: 'bad gateway' }) as const),
    );
    const {
      seeded,
      tokens: { refreshToken },
    } = await seedDueGrant();
    await waitForVersion(seeded.id, 1);
    const times = endpoint.requests.filter((r) => r.form.refresh_token === refreshToken).map((r) => r.at);
    expect(times).toHaveLength(5);
    const gaps = times.slice(1).map((t, i) => t - (times[i] ?? 0));
    // Equal jitter on base 200 ms doubling, capped at 1 s: each gap at least half its step.
    expect(gaps[0]).toBeGreaterThanOrEqual(100);
    expect(gaps[1]).toBeGreaterThanOrEqual(200);
    expect(gaps[2]).toBeGreaterThanOrEqual(400);
    expect(gaps[3]).toBeGreaterThanOrEqual(500);
  });

  it('honours Retry-After on a 429', async () => {
    endpoint.push({
      type: 'status',
      status: 429,
      json: { error: 'slow_down' },
      headers: { 'retry-after': '2' },
    });
    const {
      seeded,
      tokens: { refreshToken },
    } = await seedDueGrant();
    await waitForVersion(seeded.id, 1);
    const times = endpoint.requests.filter((r) => r.form.refresh_token === refreshToken).map((r) => r.at);
    expect(times).toHaveLength(2);
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(2000);
    const failedEvent = (await recentEvents(seeded.id)).find((e) => e.outcome === 'transient_error');
    expect(failedEvent).toMatchObject({ httpStatus: 429, errorCode: 'rate_limited' });
  });

  it.each([
    ['invalid_grant', { type: 'status', status: 400, json: { error: 'invalid_grant' } }, 'needs_reconsent'],
    [
      "X's spent-token 400",
      {
        type: 'status',
        status: 400,
        json: { error: 'invalid_request', error_description: 'Value passed for the token was invalid.' },
      },
      'needs_reconsent',
    ],
    ['invalid_client', { type: 'status', status: 401, json: { error: 'invalid_client' } }, 'client_error'],
  ] as const)('stops on %s without retrying', async (_name, fault, state) => {
    endpoint.push(fault);
    const {
      seeded,
      tokens: { refreshToken },
    } = await seedDueGrant();
    const stopped = await waitFor(async () => {
      const g = (await grants().get(seeded.id))?.grant;
      return g?.state === state ? g : undefined;
    }, `the grant to become ${state}`);
    expect(stopped.version).toBe(0);
    // Longer than several backoff steps and reconcile passes: still exactly one request.
    await sleep(2500);
    expect(requestsFor(refreshToken)).toBe(1);
    expect((await grants().get(seeded.id))?.grant.state).toBe(state);
    expect((await recentEvents(seeded.id))[0]).toMatchObject({ outcome: state });
    const failed = await engine.service.engine.queue.getFailed();
    expect(failed.some((j) => j.data.grantId === seeded.id)).toBe(true);
    if (state === 'client_error') {
      // The refusal is the client's: it is failing for every replica until a probe is answered, and
      // an operator's retry (the provider takes the client again) is that probe.
      const { pacer, actions } = engine.service.engine;
      expect(await pacer.condition(clientRef)).toMatchObject({ state: 'failing', code: 'invalid_client' });
      const stored = await grants().get(seeded.id);
      expect(stored && (await retryGrant(actions, stored))?.ok).toBe(true);
      expect(await pacer.condition(clientRef)).toMatchObject({ state: 'ok' });
    }
  });

  it('stops a grant whose client lost its secret as client_error, without a request', async () => {
    const broken = await addClient(engine, profile(), {
      name: 'no-secret',
      clientId: 'gk-client',
      authMethod: 'client_secret_basic',
    });
    const minted = endpoint.mintGrant();
    const seeded = await seedGrant(engine, broken.id, profile(), { ...minted, expiresIn: 0 });
    const stopped = await waitFor(async () => {
      const g = (await grants().get(seeded.id))?.grant;
      return g?.state === 'client_error' ? g : undefined;
    }, 'the grant to become client_error');
    expect(stopped.lastError).toMatch(/no client secret/);
    expect(requestsFor(minted.refreshToken)).toBe(0);
    expect((await recentEvents(seeded.id))[0]).toMatchObject({ errorCode: 'client_misconfigured' });
  });

  it('keeps the stored refresh token when the response carries none', async () => {
    endpoint.push({ type: 'rotate', expiresIn: 3600, omitRefreshToken: true });
    const { seeded, tokens: before } = await seedDueGrant();
    const { tokens } = await waitForVersion(seeded.id, 1);
    expect(tokens.refreshToken()).toBe(before.refreshToken);
    expect(tokens.accessToken()).not.toBe(before.accessToken);
    expect((await recentEvents(seeded.id))[0]).toMatchObject({ outcome: 'refreshed', rotated: false });
  });

  it("uses the provider's default lifetime when expires_in is missing", async () => {
    endpoint.push({ type: 'rotate', expiresIn: null });
    const { seeded } = await seedDueGrant();
    const { grant: after } = await waitForVersion(seeded.id, 1);
    expect(after.accessLifetimeMs).toBe(1800_000);
    expect(after.accessExpiresAt - after.refreshTokenUsedAt).toBe(1800_000);
    expect((await recentEvents(seeded.id))[0]?.message).toMatch(/default lifetime/);
  });

  it('accepts expires_in as a numeric string', async () => {
    endpoint.push({ type: 'rotate', expiresIn: '7200' });
    const { seeded } = await seedDueGrant();
    const { grant: after } = await waitForVersion(seeded.id, 1);
    expect(after.accessLifetimeMs).toBe(7200_000);
  });

  it('keeps every token and the client secret out of Redis, the logs and the db file', async () => {
    const secrets = [CLIENT_SECRET, ...endpoint.issuedTokens()];
    expect(secrets.length).toBeGreaterThan(10);
    const redisText = await collectRedisText(redis.url);
    expect(redisText).toContain('grantkeeper:refresh');
    expect(leakedSecrets(redisText, secrets)).toEqual([]);
    const logs = engine.logs.join('');
    expect(logs).toContain('grant refreshed');
    expect(leakedSecrets(logs, secrets)).toEqual([]);
    expect(leakedSecrets(readDbFiles(engine.service.app.database!.path), secrets)).toEqual([]);
  });
});
