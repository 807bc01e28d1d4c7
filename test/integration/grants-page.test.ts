import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/store/api-key-store.js';
import { packageRoot } from '../../src/util/package-root.js';
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

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const FAILING_COLOUR = 'rgb(217, 119, 6)';
const ACTIVE_COLOUR = 'rgb(22, 163, 74)';
type StyleWindow = { getComputedStyle(node: unknown): { backgroundColor: string } };
// Runs in the page; the cast stands in for DOM types, which the tests compile without.
const background = (el: Locator) =>
  el.evaluate((node) => (globalThis as unknown as StyleWindow).getComputedStyle(node).backgroundColor);

describe('the grants page in headless Chromium', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let browser: Browser;
  let key: string;

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey(), api: {} });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    key = new ApiKeyStore(engine.service.app.store.db).create({
      name: 'ops',
      role: 'admin',
      now: Date.now(),
    }).key;
  });

  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('shows a failing grant in its failing colour, with its error and attempts', async () => {
    const profile = testProfile(endpoint.url);
    const clientRef = addClient(engine, profile, { clientId: 'gk', clientSecret: 'page-secret' }).id;
    // The provider is down for everything that asks; the healthy grant does not need it for an hour.
    endpoint.setDefault({ type: 'status', status: 503, body: 'down for maintenance' });
    await seedGrant(engine, clientRef, profile, { ...endpoint.mintGrant(), expiresIn: 3600 }, '@healthy');
    const failing = await seedGrant(
      engine,
      clientRef,
      profile,
      { ...endpoint.mintGrant(), expiresIn: 1 },
      '@flaky',
    );
    await waitFor(
      () => engine.service.app.grants.get(failing.id)?.state === 'failing',
      'the grant to start failing',
    );

    const context = await browser.newContext({ viewport: { width: 1280, height: 480 } });
    const page = await context.newPage();
    const unauthenticated = await page.goto(`${engine.keeper!.url}/`);
    expect(unauthenticated?.status()).toBe(401);
    await expect(page.locator('input[name=key]').count()).resolves.toBe(1);

    // Sign in through the form: the key becomes an HttpOnly session cookie.
    await page.fill('input[name=key]', key);
    await Promise.all([page.waitForURL(`${engine.keeper!.url}/`), page.click('button[type=submit]')]);
    const row = page.locator(`tr[data-grant-id="${failing.id}"]`);
    await row.waitFor({ timeout: 10_000 });
    const badge = row.locator('.state');
    expect(await badge.textContent()).toBe('failing');
    expect(await background(badge)).toBe(FAILING_COLOUR);
    expect(await row.locator('.error').textContent()).toMatch(/503/);
    expect(await row.locator('.timeline .dot.o-transient_error').count()).toBeGreaterThan(0);
    const healthy = page.locator('tr[data-state="active"] .state');
    expect(await background(healthy)).toBe(ACTIVE_COLOUR);

    const outDir = join(packageRoot(), 'test-output');
    mkdirSync(outDir, { recursive: true });
    await page.screenshot({ path: join(outDir, 'grants-page.png'), fullPage: true });

    // The same session opens the queue dashboard; without it, neither the page data nor the board.
    const board = await page.goto(`${engine.keeper!.url}/admin/queues`);
    expect(board?.status()).toBe(200);
    const cookies = await context.cookies();
    expect(cookies.find((c) => c.name === 'grantkeeper_key')).toMatchObject({
      httpOnly: true,
      sameSite: 'Strict',
    });
    await context.close();
    expect((await fetch(`${engine.keeper!.url}/admin/queues`)).status).toBe(401);
    expect((await fetch(`${engine.keeper!.url}/admin/queues/api/queues`)).status).toBe(401);
  });
});
