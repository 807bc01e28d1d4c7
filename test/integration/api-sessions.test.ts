import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { CSRF_HEADER, hashSessionId, SESSION_COOKIE } from '../../src/api/auth/browser-sessions.js';
import type { Grant } from '../../src/grants/grant.js';
import type { ApiKeyRepository } from '../../src/grants/ports.js';
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
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { readDbFiles } from '../support/secret-scan.js';

/** Browser sessions and cross-site protection, driven with plain HTTP and the headers a browser sends. */
describe('API browser sessions', () => {
  let redis: PrivateRedis;
  let engine: Engine;
  let dataDir: string;
  let base: string;
  let grant: Grant;
  let keys: ApiKeyRepository;
  let adminKey: string;
  let readerKey: string;
  // Another port on the same host: the same *site* for SameSite, a different origin.
  const foreign = 'http://127.0.0.1:1';

  const login = (key: string, headers: Record<string, string> = { origin: base }) =>
    fetch(`${base}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams({ key }).toString(),
    });
  /** Signs in and returns the session cookie's value and the CSRF token the page carries. */
  const signIn = async (key: string) => {
    const res = await login(key);
    expect(res.status).toBe(303);
    const cookie = new RegExp(`^${SESSION_COOKIE}=([^;]*)`).exec(res.headers.get('set-cookie') ?? '')?.[1];
    expect(cookie).toBeDefined();
    const page = await withCookie(cookie!, '/');
    expect(page.status).toBe(200);
    const csrf = /data-csrf="([^"]+)"/.exec(await page.text())?.[1];
    expect(csrf).toBeDefined();
    return { cookie: cookie!, csrf: csrf!, setCookie: res.headers.get('set-cookie')! };
  };
  const withCookie = (cookie: string, path: string, init: RequestInit = {}) =>
    fetch(`${base}${path}`, {
      redirect: 'manual',
      ...init,
      headers: { cookie: `${SESSION_COOKIE}=${cookie}`, ...(init.headers as Record<string, string>) },
    });
  const sessionRows = () =>
    engine.service.app.database!.sqlite.prepare('select * from api_sessions').all() as Array<{
      id_hash: string;
      api_key_id: string;
    }>;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey(), api: {} });
    base = engine.keeper!.url;
    const profile = testProfile('http://127.0.0.1:9/token');
    const client = await addClient(engine, profile, {
      clientId: 'sessions',
      clientSecret: 'sessions-secret',
    });
    grant = await seedGrant(
      engine,
      client.id,
      profile,
      { accessToken: `at-${randomBytes(8).toString('hex')}`, refreshToken: 'rt-sessions', expiresIn: 3600 },
      '@page',
    );
    keys = engine.service.app.apiKeys;
    adminKey = (await issueApiKey(keys, { name: 'ops', role: 'admin', now: Date.now() })).key;
    readerKey = (
      await issueApiKey(keys, { name: 'bot', role: 'reader', grantIds: [grant.id], now: Date.now() })
    ).key;
  });

  afterAll(async () => {
    await engine?.stop();
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  it('signs in by POST only: the cookie is a random server-side id, stored as its hash, never the key', async () => {
    const { cookie, setCookie } = await signIn(adminKey);
    expect(cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(cookie).not.toContain(adminKey.slice(3, 20));
    expect(setCookie).toMatch(/; HttpOnly/i);
    expect(setCookie).toMatch(/; SameSite=Strict/i);
    expect(setCookie).toMatch(/; Path=\//);
    expect(setCookie).toMatch(/; Max-Age=43200/);
    const admin = (await keys.findByName('ops'))!;
    expect(sessionRows()).toContainEqual(
      expect.objectContaining({ id_hash: hashSessionId(cookie), api_key_id: admin.id }),
    );
    const files = readDbFiles(engine.service.app.database!.path);
    expect(files).not.toContain(cookie);
    expect(files).not.toContain(adminKey);

    // A key in the URL signs nobody in: the form again, no cookie.
    const byQuery = await fetch(`${base}/?key=${encodeURIComponent(adminKey)}`, { redirect: 'manual' });
    expect(byQuery.status).toBe(303);
    expect(byQuery.headers.get('location')).toBe('./');
    expect(byQuery.headers.get('set-cookie')).toBeNull();
    const followed = await fetch(`${base}/?key=${encodeURIComponent(adminKey)}`);
    expect(followed.status).toBe(401);
    expect(followed.url).toBe(`${base}/`);
    expect(await followed.text()).toContain('name="key"');
    // Nor does the key itself as a cookie (what the old session cookie held).
    expect((await withCookie(adminKey, '/')).status).toBe(401);
    expect((await withCookie(adminKey, '/v1/grants')).status).toBe(401);
    // A wrong key gets the form with a message, and no cookie.
    const wrong = await login(`${adminKey}x`);
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
  });

  it('refuses a sign-in posted from another origin (login CSRF); a client without Origin may sign in', async () => {
    const before = sessionRows().length;
    const attempts: Array<Record<string, string>> = [
      { origin: foreign },
      { origin: 'null' },
      { origin: base, 'sec-fetch-site': 'same-site' },
      { origin: 'null', 'sec-fetch-site': 'same-site' },
      { origin: 'null', 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of attempts) {
      const res = await login(adminKey, headers);
      expect(res.status).toBe(403);
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(((await res.json()) as { error: string }).error).toBe('cross_site_request');
    }
    expect(sessionRows().length).toBe(before);
    expect((await login(adminKey, {})).status).toBe(303);
    // Our pages send no referrer, so a browser posts their form with `Origin: null`: Sec-Fetch-Site tells.
    expect((await login(adminKey, { origin: 'null', 'sec-fetch-site': 'same-origin' })).status).toBe(303);
  });

  it('a cookie-authenticated write needs the exact Origin and the CSRF token; reads need neither', async () => {
    const { cookie, csrf } = await signIn(adminKey);
    const version = async () => (await engine.service.app.grants.get(grant.id))!.grant.nextRefreshAt;
    const retry = (headers: Record<string, string>) =>
      withCookie(cookie, `/v1/grants/${grant.id}/retry`, { method: 'POST', headers });
    const before = await version();
    const refused: Array<Record<string, string>> = [
      {},
      { [CSRF_HEADER]: csrf },
      { origin: foreign, [CSRF_HEADER]: csrf },
      { origin: 'null', [CSRF_HEADER]: csrf },
      { origin: `${base}/`, [CSRF_HEADER]: csrf },
      { origin: base },
      { origin: base, [CSRF_HEADER]: `${csrf}x` },
      { origin: base, [CSRF_HEADER]: csrf, 'sec-fetch-site': 'same-site' },
      { origin: base, [CSRF_HEADER]: csrf, 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of refused) {
      const res = await retry(headers);
      expect({ headers, status: res.status }).toEqual({ headers, status: 403 });
      expect(((await res.json()) as { error: string }).error).toBe('cross_site_request');
    }
    // A forced refresh spends a refresh token: the same proof is needed for the POST token read.
    const forced = await withCookie(cookie, `/v1/grants/${grant.id}/token`, {
      method: 'POST',
      headers: { origin: foreign, 'content-type': 'application/json' },
      body: '{"force":true}',
    });
    expect(forced.status).toBe(403);
    expect(await version()).toBe(before);

    expect((await withCookie(cookie, '/v1/grants')).status).toBe(200);
    const ok = await retry({ origin: base, [CSRF_HEADER]: csrf, 'sec-fetch-site': 'same-origin' });
    // Let through, the retry is done at once and answers the outcome: nobody listens on the token
    // endpoint, so that is "unavailable" (not a cross-site refusal).
    const passed = async (res: Response) => ({
      status: res.status,
      error: ((await res.json()) as { error: string }).error,
    });
    expect(await passed(ok)).toEqual({ status: 503, error: 'unavailable' });
    // A bearer request carries no ambient authority: no Origin rules for it.
    const bearer = await fetch(`${base}/v1/grants/${grant.id}/retry`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, origin: foreign },
    });
    expect(await passed(bearer)).toEqual({ status: 503, error: 'unavailable' });
    // An Authorization header decides alone: a bad one is not rescued by a good cookie.
    expect(
      (await withCookie(cookie, '/v1/grants', { headers: { authorization: 'Bearer gk_nope' } })).status,
    ).toBe(401);
  });

  it("holds the dashboard's writes (which cannot carry our header) to the exact origin", async () => {
    const { cookie } = await signIn(adminKey);
    const pause = (headers: Record<string, string>) =>
      withCookie(cookie, '/admin/queues/api/queues/refresh/pause', { method: 'PUT', headers });
    const refused: Array<Record<string, string>> = [
      {},
      { origin: foreign },
      { origin: base, 'sec-fetch-site': 'same-site' },
    ];
    for (const headers of refused) {
      expect((await pause(headers)).status).toBe(403);
    }
    expect(await engine.service.engine.queue.isPaused()).toBe(false);
    expect((await pause({ origin: base, 'sec-fetch-site': 'same-origin' })).status).toBe(200);
    expect(await engine.service.engine.queue.isPaused()).toBe(true);
    const resume = await withCookie(cookie, '/admin/queues/api/queues/refresh/resume', {
      method: 'PUT',
      headers: { origin: base },
    });
    expect(resume.status).toBe(200);
    expect(await engine.service.engine.queue.isPaused()).toBe(false);
  });

  it('gives a reader session its own grants only, and no dashboard', async () => {
    const { cookie } = await signIn(readerKey);
    const page = await (await withCookie(cookie, '/')).text();
    expect(page).not.toContain('admin/queues');
    expect((await withCookie(cookie, '/admin/queues')).status).toBe(403);
    const list = (await (await withCookie(cookie, '/v1/grants')).json()) as { grants: Array<{ id: string }> };
    expect(list.grants.map((g) => g.id)).toEqual([grant.id]);
  });

  it('logs out by POST with the token only; afterwards the cookie opens nothing', async () => {
    const { cookie, csrf } = await signIn(adminKey);
    const logout = (headers: Record<string, string>) =>
      withCookie(cookie, '/logout', { method: 'POST', headers });
    expect((await logout({ origin: foreign, [CSRF_HEADER]: csrf })).status).toBe(403);
    expect((await logout({ origin: base })).status).toBe(403);
    expect((await withCookie(cookie, '/v1/grants')).status).toBe(200);
    const out = await logout({ origin: base, [CSRF_HEADER]: csrf });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(new RegExp(`^${SESSION_COOKIE}=;`));
    expect(sessionRows().map((r) => r.id_hash)).not.toContain(hashSessionId(cookie));
    expect((await withCookie(cookie, '/v1/grants')).status).toBe(401);
    expect((await withCookie(cookie, '/')).status).toBe(401);
  });

  it('ends the sessions of a revoked key at once', async () => {
    const { key } = await issueApiKey(keys, { name: 'temp', role: 'admin', now: Date.now() });
    const { cookie } = await signIn(key);
    expect((await withCookie(cookie, '/v1/grants')).status).toBe(200);
    expect(await keys.remove('temp')).toBe(true);
    expect(sessionRows().map((r) => r.id_hash)).not.toContain(hashSessionId(cookie));
    expect((await withCookie(cookie, '/v1/grants')).status).toBe(401);
    expect((await withCookie(cookie, '/')).status).toBe(401);
  });

  it('refuses an expired session and purges expired ones at the next sign-in', async () => {
    const sessions = engine.service.app.sessions;
    const admin = (await keys.findByName('ops'))!;
    const openedAt = Date.now() - 13 * 3600_000;
    const id = randomBytes(32).toString('base64url');
    const stale = {
      id,
      row: {
        idHash: hashSessionId(id),
        apiKeyId: admin.id,
        createdAt: openedAt,
        expiresAt: openedAt + 12 * 3600_000,
      },
    };
    await sessions.create(stale.row);
    expect((await withCookie(stale.id, '/v1/grants')).status).toBe(401);
    expect((await withCookie(stale.id, '/')).status).toBe(401);
    expect(sessionRows().map((r) => r.id_hash)).toContain(stale.row.idHash);
    await signIn(adminKey);
    expect(sessionRows().map((r) => r.id_hash)).not.toContain(stale.row.idHash);
  });
});
