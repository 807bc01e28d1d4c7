import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { createKeeper, GrantkeeperError, type Keeper } from '../../src/library/index.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

/** A resource server that accepts only the tokens the test allows, and counts what it saw. */
async function startResource(accept: (token: string) => boolean) {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    seen.push(token);
    res.statusCode = accept(token) ? 200 : 401;
    res.end(res.statusCode === 200 ? 'ok' : 'invalid token');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/me`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('createKeeper', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let key: string;
  let clientRef: string;
  let keepers: Array<[string, Keeper]>;
  const sealingKey = testKey();
  const profile = () => testProfile(endpoint.url);

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: sealingKey, api: {} });
    clientRef = (await addClient(engine, profile(), { clientId: 'gk', clientSecret: 'lib-secret' })).id;
    key = (
      await issueApiKey(engine.service.app.apiKeys, {
        name: 'lib',
        role: 'admin',
        now: Date.now(),
      })
    ).key;
    keepers = [
      ['over HTTP', await createKeeper({ baseUrl: engine.keeper!.url, apiKey: key })],
      [
        'in-process',
        await createKeeper({
          env: {
            GRANTKEEPER_DATA_DIR: dataDir,
            GRANTKEEPER_KEY: sealingKey,
            REDIS_URL: redis.url,
            GRANTKEEPER_LOG_LEVEL: 'silent',
          },
        }),
      ],
    ];
  });

  afterAll(async () => {
    await Promise.all((keepers ?? []).map(([, k]) => k.close()));
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const refreshesOf = (refreshToken: string) =>
    endpoint.requests.filter((r) => r.form.refresh_token === refreshToken).length;

  describe.each(['over HTTP', 'in-process'])('%s', (mode) => {
    const index = mode === 'over HTTP' ? 0 : 1;
    const keeper = () => keepers[index]![1];
    const label = (what: string) => `@${what}-${index}`;

    it('hands out the stored token, and a refreshed one when min_valid asks for more', async () => {
      const minted = endpoint.mintGrant();
      // An hour-long token with 30 s left: a 600 s minimum needs a refresh, which can satisfy it.
      await seedGrant(
        engine,
        clientRef,
        profile(),
        { ...minted, expiresIn: 3600 },
        label('read'),
        Date.now() - 3570_000,
      );
      const stored = await keeper().getAccessToken(label('read'));
      expect(stored).toMatchObject({ accessToken: minted.accessToken, refreshed: false });
      const longer = await keeper().getAccessToken(label('read'), { minValid: 600 });
      expect(longer.refreshed).toBe(true);
      expect(endpoint.isAccessTokenValid(longer.accessToken)).toBe(true);
      expect(refreshesOf(minted.refreshToken)).toBe(1);
      const missing = await keeper()
        .getAccessToken('@nobody')
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(GrantkeeperError);
      expect((missing as GrantkeeperError).code).toBe('not_found');
    });

    it('names failures with the codes of the error vocabulary, the same in process and over HTTP', async () => {
      const minted = endpoint.mintGrant();
      await seedGrant(engine, clientRef, profile(), { ...minted, expiresIn: 3600 }, label('codes'));
      const failure = (read: Promise<unknown>) =>
        read.then(
          () => undefined,
          (e: unknown) => e as GrantkeeperError,
        );
      const tooLong = await failure(keeper().getAccessToken(label('codes'), { minValid: 7200 }));
      expect(tooLong).toBeInstanceOf(GrantkeeperError);
      expect(tooLong).toMatchObject({ code: 'min_valid_unsatisfiable', httpStatus: 422 });
      endpoint.push({ type: 'status', status: 400, json: { error: 'invalid_grant' } });
      await failure(keeper().getAccessToken(label('codes'), { force: true }));
      const stopped = await failure(keeper().getAccessToken(label('codes')));
      expect(stopped).toMatchObject({ code: 'needs_reconsent', httpStatus: 409 });
    });

    it('on a 401 forces one refresh and retries once, which then succeeds', async () => {
      const minted = endpoint.mintGrant();
      await seedGrant(engine, clientRef, profile(), { ...minted, expiresIn: 3600 }, label('revoked'));
      // The resource server no longer honours the stored token (revoked early, clock skew...).
      const resource = await startResource((t) => t !== minted.accessToken && endpoint.isAccessTokenValid(t));
      try {
        const res = await keeper().fetch(label('revoked'), resource.url, {
          headers: { accept: 'text/plain' },
        });
        expect(res.status).toBe(200);
        expect(await res.text()).toBe('ok');
        expect(resource.seen).toHaveLength(2);
        expect(resource.seen[0]).toBe(minted.accessToken);
        expect(refreshesOf(minted.refreshToken)).toBe(1);
      } finally {
        await resource.close();
      }
    });

    it('retries at most once: a second 401 is returned as is', async () => {
      const minted = endpoint.mintGrant();
      await seedGrant(engine, clientRef, profile(), { ...minted, expiresIn: 3600 }, label('never'));
      const resource = await startResource(() => false);
      try {
        const before = endpoint.requests.length;
        const res = await keeper().fetch(label('never'), resource.url, { method: 'POST', body: 'hello' });
        expect(res.status).toBe(401);
        expect(resource.seen).toHaveLength(2);
        expect(resource.seen[1]).not.toBe(resource.seen[0]);
        expect(endpoint.requests.length - before).toBe(1);
      } finally {
        await resource.close();
      }
    });
  });
});

describe('createKeeper over HTTP, against a recorded API', () => {
  const recordingFetch = (status: number, body: unknown) => {
    const calls: Array<{ url: string; method: string; body: string | undefined }> = [];
    const fake = (async (input: string | URL | Request, init: RequestInit = {}) => {
      calls.push({ url: String(input), method: init.method ?? 'GET', body: init.body as string | undefined });
      return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    return { calls, fake };
  };
  const token = {
    grant_id: 'g_1',
    access_token: 'at',
    token_type: 'Bearer',
    expires_at: new Date(Date.now() + 60_000).toISOString(),
    expires_in: 60,
    refreshed: true,
  };

  it('reads with a GET and forces with a POST, never a GET with force', async () => {
    const { calls, fake } = recordingFetch(200, token);
    const keeper = await createKeeper({ baseUrl: 'http://127.0.0.1:1/', apiKey: 'gk_x', fetch: fake });
    await keeper.getAccessToken('@a b', { minValid: 30 });
    await keeper.getAccessToken('@a b', { minValid: 30, force: true });
    expect(calls).toEqual([
      { url: 'http://127.0.0.1:1/v1/grants/%40a%20b/token?min_valid=30', method: 'GET', body: undefined },
      {
        url: 'http://127.0.0.1:1/v1/grants/%40a%20b/token',
        method: 'POST',
        body: JSON.stringify({ min_valid: 30, force: true }),
      },
    ]);
    expect(calls.some((c) => c.url.includes('force'))).toBe(false);
  });

  it('parses the answer: a 200 without a token body is an error, not a token of "undefined"', async () => {
    const { fake } = recordingFetch(200, { grant_id: 'g_1' });
    const keeper = await createKeeper({ baseUrl: 'http://127.0.0.1:1', apiKey: 'gk_x', fetch: fake });
    const error = await keeper.getAccessToken('@a').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GrantkeeperError);
    expect((error as GrantkeeperError).code).toBe('bad_response');
  });
});
