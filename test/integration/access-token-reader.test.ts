import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TokenReadError } from '../../src/refresh/access-token-reader.js';
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
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

describe('on-demand token reads', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let dataDir: string;
  let engines: Engine[];
  let clientRef: string;
  const profile = () => testProfile(endpoint.url);

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    const key = testKey();
    engines = [
      await startEngine({ redisUrl: redis.url, dataDir, key }),
      await startEngine({ redisUrl: redis.url, dataDir, key }),
    ];
    clientRef = (await addClient(engines[0]!, profile(), { clientId: 'gk', clientSecret: 'reader-secret' }))
      .id;
  });

  afterAll(async () => {
    await Promise.all((engines ?? []).map((e) => e.stop()));
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const readers = () => engines.map((e) => e.service.engine.reader);
  const requestsFor = (rt: string) => endpoint.requests.filter((r) => r.form.refresh_token === rt).length;

  it('returns the stored token while it lasts long enough, without a request', async () => {
    const minted = endpoint.mintGrant();
    const grant = await seedGrant(
      engines[0]!,
      clientRef,
      profile(),
      { ...minted, expiresIn: 3600 },
      '@fresh',
    );
    const token = await readers()[1]!.read('@fresh', { minValidSec: 60 });
    expect(token).toMatchObject({ grantId: grant.id, accessToken: minted.accessToken, refreshed: false });
    expect(requestsFor(minted.refreshToken)).toBe(0);
  });

  it('refreshes once for 50 simultaneous readers in two processes, and the worker does not refresh that version again', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: 100 });
    const minted = endpoint.mintGrant();
    // An hour-long token issued 5 s short of an hour ago: due for the worker in a few seconds, too
    // short for readers asking 60 s.
    const grant = await seedGrant(
      engines[0]!,
      clientRef,
      profile(),
      { ...minted, expiresIn: 3600 },
      '@burst',
      Date.now() - 3595_000,
    );
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => readers()[i % 2]!.read(grant.id, { minValidSec: 60 })),
    );
    expect(new Set(results.map((r) => r.accessToken)).size).toBe(1);
    expect(results[0]!.accessToken).not.toBe(minted.accessToken);
    expect(endpoint.isAccessTokenValid(results[0]!.accessToken)).toBe(true);
    expect(requestsFor(minted.refreshToken)).toBe(1);
    // Past the old plan's due time: the worker's job for version 0 is stale and sends nothing.
    await sleep(5000);
    const after = (await engines[0]!.service.app.grants.get(grant.id))!.grant;
    expect(after.version).toBe(1);
    expect(requestsFor(minted.refreshToken)).toBe(1);
    expect(endpoint.reuseDetections).toBe(0);
  });

  it('forces a refresh when asked, once', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    const minted = endpoint.mintGrant();
    await seedGrant(engines[0]!, clientRef, profile(), { ...minted, expiresIn: 3600 }, '@forced');
    const [a, b] = await Promise.all([
      readers()[0]!.read('@forced', { force: true }),
      readers()[0]!.read('@forced'),
    ]);
    expect(a.refreshed).toBe(true);
    expect(a.accessToken).not.toBe(minted.accessToken);
    expect(b.accessToken === minted.accessToken || b.accessToken === a.accessToken).toBe(true);
    expect(requestsFor(minted.refreshToken)).toBe(1);
  });

  it.each([
    ['an unknown grant', 'nobody', {}, 'not_found'],
    ['a minimum longer than any token lives', '@fresh', { minValidSec: 7200 }, 'min_valid_unsatisfiable'],
  ] as const)('refuses %s', async (_name, ref, options, reason) => {
    const err = (await readers()[0]!
      .read(ref, options)
      .catch((e: unknown) => e)) as TokenReadError;
    expect(err.code).toBe(reason);
  });

  it('reports a dead grant by its state and a provider outage as unavailable', async () => {
    const dead = endpoint.mintGrant();
    await seedGrant(
      engines[0]!,
      clientRef,
      profile(),
      { ...dead, expiresIn: 3600 },
      '@dead',
      Date.now() - 3599_000,
    );
    endpoint.push({ type: 'status', status: 400, json: { error: 'invalid_grant' } });
    const unusable = (await readers()[0]!
      .read('@dead', { minValidSec: 60 })
      .catch((e: unknown) => e)) as TokenReadError;
    expect(unusable.code).toBe('needs_reconsent');
    expect(unusable.message).toMatch(/needs_reconsent/);

    const flaky = endpoint.mintGrant();
    await seedGrant(
      engines[0]!,
      clientRef,
      profile(),
      { ...flaky, expiresIn: 3600 },
      '@flaky',
      Date.now() - 3599_000,
    );
    endpoint.push({ type: 'status', status: 503, body: 'down' });
    const unavailable = (await readers()[0]!
      .read('@flaky', { minValidSec: 60 })
      .catch((e: unknown) => e)) as TokenReadError;
    expect(unavailable.code).toBe('unavailable');
    expect(unavailable.retryAt).toBeGreaterThan(Date.now());
    expect(unavailable.message).not.toContain(flaky.refreshToken);
  });

  it('refuses a minimum no token of this provider reaches without asking the provider', async () => {
    const minted = endpoint.mintGrant();
    await seedGrant(engines[0]!, clientRef, profile(), { ...minted, expiresIn: 600 }, '@short-lived');
    const reasons = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const err = (await readers()[0]!
          .read('@short-lived', { minValidSec: 900 })
          .catch((e: unknown) => e)) as TokenReadError;
        return err.code;
      }),
    );
    expect(new Set(reasons)).toEqual(new Set(['min_valid_unsatisfiable']));
    expect(requestsFor(minted.refreshToken)).toBe(0);
  });

  it('answers from the store inside a backoff and leaves the backoff where the worker put it', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    const minted = endpoint.mintGrant();
    const grant = await seedGrant(
      engines[0]!,
      clientRef,
      profile(),
      { ...minted, expiresIn: 3600 },
      '@outage',
      Date.now() - 3599_000,
    );
    endpoint.push({ type: 'status', status: 503, body: 'down' });
    const first = (await readers()[0]!
      .read('@outage', { minValidSec: 60 })
      .catch((e: unknown) => e)) as TokenReadError;
    expect(first.code).toBe('unavailable');
    const failing = (await engines[0]!.service.app.grants.get(grant.id))!.grant;
    expect(failing).toMatchObject({ state: 'failing', consecutiveFailures: 1 });
    const before = requestsFor(minted.refreshToken);
    for (const reader of [...readers(), ...readers()]) {
      const err = (await reader
        .read('@outage', { minValidSec: 60 })
        .catch((e: unknown) => e)) as TokenReadError;
      expect(err.code).toBe('unavailable');
      expect(err.retryAt).toBe(failing.nextRefreshAt);
    }
    const forced = (await readers()[1]!
      .read('@outage', { force: true })
      .catch((e: unknown) => e)) as TokenReadError;
    expect(forced.code).toBe('unavailable');
    expect(requestsFor(minted.refreshToken)).toBe(before);
    expect((await engines[0]!.service.app.grants.get(grant.id))?.grant).toMatchObject({
      consecutiveFailures: 1,
      nextRefreshAt: failing.nextRefreshAt,
    });
  });

  it('answers forced reads right after a refresh from that refresh', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    const minted = endpoint.mintGrant();
    await seedGrant(engines[0]!, clientRef, profile(), { ...minted, expiresIn: 3600 }, '@forced-burst');
    const first = await readers()[0]!.read('@forced-burst', { force: true });
    expect(first.refreshed).toBe(true);
    await sleep(300);
    const again = await Promise.all([
      readers()[0]!.read('@forced-burst', { force: true }),
      readers()[1]!.read('@forced-burst', { force: true }),
    ]);
    expect(again.map((t) => t.accessToken)).toEqual([first.accessToken, first.accessToken]);
    expect(requestsFor(minted.refreshToken)).toBe(1);
    // No second rotation: the version the first forced read made is still the current one.
    expect((await engines[0]!.service.app.grants.find('@forced-burst'))?.grant.version).toBe(1);
  });
});
