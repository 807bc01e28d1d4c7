import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { SESSION_COOKIE } from '../../src/api/auth/browser-sessions.js';
import type { Grant } from '../../src/grants/grant.js';
import { packageRoot } from '../../src/util/package-root.js';
import { launchChromium, signIn } from '../support/chromium.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

const FAILING_COLOUR = 'rgb(217, 119, 6)';
const ACTIVE_COLOUR = 'rgb(22, 163, 74)';
type StyleWindow = { getComputedStyle(node: unknown): { backgroundColor: string } };
// Runs in the page; the cast stands in for DOM types, which the tests compile without.
const background = (el: Locator) =>
  el.evaluate((node) => (globalThis as unknown as StyleWindow).getComputedStyle(node).backgroundColor);

/**
 * A hostile page on another 127.0.0.1 port: the same *site* as the API (SameSite=Strict cookies
 * ride along), a different origin. On load it submits forms to write routes and to /logout, fires
 * no-cors fetches, and frames the grants page and the dashboard.
 */
function attackerPage(api: string, grantId: string): string {
  const form = (name: string, path: string, fields: Record<string, string> = {}) =>
    `<iframe name="${name}"></iframe><form id="${name}-form" method="post" target="${name}" action="${api}${path}">${Object.entries(
      fields,
    )
      .map(([k, v]) => `<input type="hidden" name="${k}" value="${v}">`)
      .join('')}</form>`;
  return `<!doctype html><html><body>
${form('refresh', `/v1/grants/${grantId}/refresh`)}
${form('token', `/v1/grants/${grantId}/token`, { force: 'true' })}
${form('logout', '/logout')}
<iframe id="page" src="${api}/"></iframe>
<iframe id="board" src="${api}/admin/queues"></iframe>
<script>
for (const f of document.querySelectorAll('form')) f.submit();
const opts = { method: 'POST', mode: 'no-cors', credentials: 'include' };
fetch('${api}/v1/grants/${grantId}/retry', opts).catch(() => {});
fetch('${api}/v1/grants/${grantId}/token', { ...opts, headers: { 'content-type': 'text/plain' }, body: '{"force":true}' }).catch(() => {});
fetch('${api}/logout', opts).catch(() => {});
</script></body></html>`;
}

describe('the grants page in headless Chromium', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let browser: Browser;
  let key: string;
  let readerKey: string;
  let healthy: Grant;
  let healthyRefreshToken: string;
  let attacker: Server;
  let attackerUrl: string;
  // The signed-in operator, shared by the tests below in order.
  let context: BrowserContext;
  let page: Page;
  /** Every URL the browser requested or navigated to: none may hold a key. */
  const urls: string[] = [];
  const api = () => engine.keeper!.url;

  const watch = (ctx: BrowserContext) => {
    ctx.on('request', (r) => urls.push(r.url()));
    ctx.on('page', (p) => p.on('framenavigated', (f) => urls.push(f.url())));
  };

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey(), api: {} });
    browser = await launchChromium();
    key = (
      await issueApiKey(engine.service.app.apiKeys, {
        name: 'ops',
        role: 'admin',
        now: Date.now(),
      })
    ).key;
    attacker = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(attackerPage(api(), healthy?.id ?? 'none'));
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`;
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => attacker?.close(resolve));
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('shows a failing grant in its failing colour, with its error and attempts', async () => {
    const profile = testProfile(endpoint.url);
    const clientRef = (await addClient(engine, profile, { clientId: 'gk', clientSecret: 'page-secret' })).id;
    // The provider is down for everything that asks; the healthy grant does not need it for an hour.
    endpoint.setDefault({ type: 'status', status: 503, body: 'down for maintenance' });
    const healthyTokens = endpoint.mintGrant();
    healthyRefreshToken = healthyTokens.refreshToken;
    healthy = await seedGrant(engine, clientRef, profile, { ...healthyTokens, expiresIn: 3600 }, '@healthy');
    const failing = await seedGrant(
      engine,
      clientRef,
      profile,
      { ...endpoint.mintGrant(), expiresIn: 1 },
      '@flaky',
    );
    readerKey = (
      await issueApiKey(engine.service.app.apiKeys, {
        name: 'bot',
        role: 'reader',
        grantIds: [healthy.id],
        now: Date.now(),
      })
    ).key;
    await waitFor(
      async () => (await engine.service.app.grants.get(failing.id))?.grant.state === 'failing',
      'the grant to start failing',
    );

    context = await browser.newContext({ viewport: { width: 1280, height: 480 } });
    watch(context);
    page = await context.newPage();
    const unauthenticated = await page.goto(`${api()}/`);
    expect(unauthenticated?.status()).toBe(401);
    await expect(page.locator('input[name=key]').count()).resolves.toBe(1);

    // Sign in through the form: the key travels in the POST body only.
    await page.fill('input[name=key]', key);
    await Promise.all([page.waitForURL(`${api()}/`), page.click('button[type=submit]')]);
    const row = page.locator(`tr[data-grant-id="${failing.id}"]`);
    await row.waitFor({ timeout: 10_000 });
    const badge = row.locator('.state');
    expect(await badge.textContent()).toBe('failing');
    expect(await background(badge)).toBe(FAILING_COLOUR);
    expect(await row.locator('.error').textContent()).toMatch(/503/);
    expect(await row.locator('.timeline .dot.o-transient_error').count()).toBeGreaterThan(0);
    const healthyBadge = page.locator('tr[data-state="active"] .state');
    expect(await background(healthyBadge)).toBe(ACTIVE_COLOUR);

    const outDir = join(packageRoot(), 'test-output');
    mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'grants-page.png'), fullPage: true });

    // The same session opens the queue dashboard.
    const board = await page.goto(`${api()}/admin/queues`);
    expect(board?.status()).toBe(200);
    // Its own writes (which cannot carry our CSRF header) pass on their exact origin.
    const put = (path: string) =>
      page.evaluate(
        async (url) => (await fetch(url, { method: 'PUT' })).status,
        `/admin/queues/api/queues/refresh/${path}`,
      );
    expect(await put('pause')).toBe(200);
    expect(await engine.service.engine.queue.isPaused()).toBe(true);
    expect(await put('resume')).toBe(200);
    expect(await engine.service.engine.queue.isPaused()).toBe(false);
    await page.goto(`${api()}/`);
    await page.locator(`tr[data-grant-id="${failing.id}"]`).waitFor({ timeout: 10_000 });

    // The cookie is a session id, not the key, and no URL the browser saw held the key.
    const cookies = await context.cookies();
    expect(cookies.map((c) => c.name)).toEqual([SESSION_COOKIE]);
    const session = cookies[0]!;
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });
    expect(session.value).not.toBe(key);
    expect(session.value).not.toContain(key.slice(3, 16));
    expect(urls.length).toBeGreaterThan(3);
    for (const url of urls) {
      expect(url).not.toContain(key.slice(3, 16));
      expect(decodeURIComponent(url)).not.toContain(key.slice(3, 16));
    }
    // Without a session, neither the page data nor the board.
    expect((await fetch(`${api()}/admin/queues`)).status).toBe(401);
    expect((await fetch(`${api()}/admin/queues/api/queues`)).status).toBe(401);
  });

  it('signs nobody in from a key in the URL', async () => {
    const other = await browser.newContext();
    try {
      const fresh = await other.newPage();
      const res = await fresh.goto(`${api()}/?key=${encodeURIComponent(key)}`);
      expect(res?.status()).toBe(401);
      // Sent to the bare URL: the key left the address bar.
      expect(fresh.url()).toBe(`${api()}/`);
      await expect(fresh.locator('input[name=key]').count()).resolves.toBe(1);
      expect(await other.cookies()).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('refuses forms and fetches from a page on another 127.0.0.1 port, and cannot be framed by it', async () => {
    // The grant and its tokens in clear: nothing about it may change.
    const row = async () => {
      const stored = (await engine.service.app.grants.get(healthy.id))!;
      return {
        grant: stored.grant,
        accessToken: stored.tokens.accessToken(),
        refreshToken: stored.tokens.refreshToken(),
      };
    };
    const before = await row();
    // The failing grant keeps retrying meanwhile; only calls spending the healthy grant's token count.
    const spent = () => endpoint.requests.filter((r) => r.form.refresh_token === healthyRefreshToken).length;
    expect(spent()).toBe(0);
    const answers = new Map<string, number>();
    page.on('response', (r) => {
      if (r.request().method() === 'POST' && r.url().startsWith(api())) {
        answers.set(`${new URL(r.url()).pathname} ${r.request().resourceType()}`, r.status());
      }
    });
    await page.goto(attackerUrl);
    await waitFor(() => answers.size >= 6, 'the attack requests answered', 15_000);
    expect(Object.fromEntries(answers)).toEqual({
      [`/v1/grants/${healthy.id}/refresh document`]: 403,
      [`/v1/grants/${healthy.id}/token document`]: 403,
      '/logout document': 403,
      [`/v1/grants/${healthy.id}/retry fetch`]: 403,
      [`/v1/grants/${healthy.id}/token fetch`]: 403,
      '/logout fetch': 403,
    });
    // Neither page rendered inside the attacker's frames: Chromium shows its error page instead.
    for (const id of ['page', 'board']) {
      const frame = await (await page.$(`iframe#${id}`))!.contentFrame();
      expect(frame!.url()).toBe('chrome-error://chromewebdata/');
      await expect(frame!.locator('#grants, #signout, input[name=key], #root').count()).resolves.toBe(0);
    }
    // Nothing changed: no refresh, no retry, and the session is still signed in.
    expect(spent()).toBe(0);
    expect(await row()).toEqual(before);
    expect(await engine.service.engine.queue.isPaused()).toBe(false);
    expect((await page.goto(`${api()}/`))?.status()).toBe(200);
    await page.locator(`tr[data-grant-id="${healthy.id}"]`).waitFor({ timeout: 10_000 });
  });

  it('signs out with the Sign out button: the session is gone for good', async () => {
    await page.goto(`${api()}/`);
    await page.locator('#signout').waitFor({ timeout: 10_000 });
    const value = (await context.cookies()).find((c) => c.name === SESSION_COOKIE)?.value;
    const withOld = () => fetch(`${api()}/v1/grants`, { headers: { cookie: `${SESSION_COOKIE}=${value}` } });
    expect((await withOld()).status).toBe(200);
    await page.click('#signout');
    // The page reloads into the sign-in form.
    await page.locator('input[name=key]').waitFor({ timeout: 10_000 });
    expect(await context.cookies()).toEqual([]);
    expect((await withOld()).status).toBe(401);
    await context.close();
  });

  it('shows a reader session its own grants only, and no dashboard', async () => {
    const readerContext = await browser.newContext();
    try {
      const readerPage = await readerContext.newPage();
      await signIn(readerPage, api(), readerKey);
      await readerPage.locator(`tr[data-grant-id="${healthy.id}"]`).waitFor({ timeout: 10_000 });
      await expect(readerPage.locator('tr[data-grant-id]').count()).resolves.toBe(1);
      await expect(readerPage.locator('a[href="admin/queues"]').count()).resolves.toBe(0);
      expect((await readerPage.goto(`${api()}/admin/queues`))?.status()).toBe(403);
    } finally {
      await readerContext.close();
    }
  });
});
