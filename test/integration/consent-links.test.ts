import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { consentLinkDeps, createConsentLink } from '../../src/consent/consent-links.js';
import type { ProviderProfile } from '../../src/oauth/providers.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { cspViolations, launchChromium } from '../support/chromium.js';
import { runCli } from '../support/cli.js';
import {
  addClient,
  type Engine,
  removeDir,
  startEngine,
  tempDataDir,
  testKey,
  waitFor,
} from '../support/engine.js';
import { type OidcServer, revokeRefreshToken, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets, readDbFiles } from '../support/secret-scan.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const WEBHOOK_SECRET = `whsec-${randomBytes(12).toString('hex')}`;
const CLIENT = 'links-oidc';
const sealingKey = testKey();

/** A port nobody listens on now, so the provider can be told the callback before the API starts. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface BrowserOutcome {
  status: number | undefined;
  message: string;
  /** Every address the browser went through (link, provider, callback). */
  urls: string[];
}

describe('one-time consent links, end to end in Chromium against oidc-provider', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let receiver: WebhookReceiver;
  let engine: Engine;
  let browser: Browser;
  let dataDir: string;
  let base: string;
  let adminKey: string;
  let readerKey: string;
  let profile: ProviderProfile;
  const csp: string[] = [];
  /** Link tokens, states, codes and provider tokens: none may reach a log line or the db. */
  const secrets = new Set<string>();

  const api = (path: string, init: RequestInit & { key?: string } = {}) =>
    fetch(`${base}${path}`, {
      ...init,
      redirect: 'manual',
      headers: {
        ...(init.key ? { authorization: `Bearer ${init.key}` } : {}),
        ...(init.body ? { 'content-type': 'application/json' } : {}),
      },
    });
  const newLink = async (label: string, client = CLIENT) => {
    const res = await api('/v1/links', {
      method: 'POST',
      key: adminKey,
      body: JSON.stringify({ client, label }),
    });
    expect(res.status).toBe(201);
    const link = (await res.json()) as { url: string; label: string; expires_at: string };
    secrets.add(link.url.split('/').pop() ?? '');
    return link;
  };
  /** Every grant as it stands: a refused consent must leave these exactly as they were. */
  const grantsNow = async () =>
    (await engine.service.app.grants.list()).map((g) => ({
      id: g.id,
      label: g.label,
      version: g.version,
      subject: g.subject,
      state: g.state,
    }));

  /** The account owner opens the link in a fresh browser, signs in as `account` and allows (or denies). */
  const consentInBrowser = async (
    url: string,
    account: string,
    opts: { deny?: boolean } = {},
  ): Promise<BrowserOutcome> => {
    const context = await browser.newContext();
    csp.push(...cspViolations(context));
    const page = await context.newPage();
    const urls: string[] = [];
    let status: number | undefined;
    page.on('response', (r) => {
      urls.push(r.url());
      if (r.url().startsWith(base)) status = r.status();
    });
    try {
      await page.goto(url);
      if (page.url().startsWith(oidc.issuer)) {
        await page.fill('input[name=accountId]', account);
        await Promise.all([page.waitForSelector('#allow'), page.click('#sign-in')]);
        await Promise.all([
          page.waitForURL((u) => u.href.startsWith(`${base}/callback`)),
          page.click(opts.deny ? '#deny' : '#allow'),
        ]);
      }
      await page.waitForSelector('#message');
      for (const u of urls) {
        const parsed = new URL(u);
        for (const name of ['state', 'code']) {
          const value = parsed.searchParams.get(name);
          if (value) secrets.add(value);
        }
      }
      return { status, message: (await page.textContent('#message')) ?? '', urls };
    } finally {
      await context.close();
    }
  };

  beforeAll(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    [redis, oidc, receiver, browser] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 60,
        clients: [
          {
            clientId: 'gk-links',
            clientSecret: `gk-links-secret-${randomBytes(8).toString('hex')}`,
            redirectUris: [`${base}/callback`],
          },
        ],
      }),
      startWebhookReceiver(),
      launchChromium(),
    ]);
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: sealingKey,
      config: { apiPort: port, publicUrl: base, webhookUrls: [receiver.url] },
      api: { webhookSecret: WEBHOOK_SECRET, alertRetry: { attempts: 3, baseDelayMs: 100 } },
    });
    profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const client = oidc.clients[0]!;
    secrets.add(client.clientSecret!);
    await addClient(engine, profile, {
      name: CLIENT,
      clientId: client.clientId,
      clientSecret: client.clientSecret!,
    });
    const keys = engine.service.app.apiKeys;
    adminKey = (await issueApiKey(keys, { name: 'links-admin', role: 'admin', now: Date.now() })).key;
    readerKey = (
      await issueApiKey(keys, {
        name: 'links-reader',
        role: 'reader',
        grantIds: ['g_000000000000'],
        now: Date.now(),
      })
    ).key;
  });

  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close(), receiver?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('stores the grant a link consents to, and refuses the same link a second time', async () => {
    const link = await newLink('@alice');
    expect(link.url).toMatch(new RegExp(`^${base}/connect/[A-Za-z0-9_-]{43}$`));
    const done = await consentInBrowser(link.url, 'alice');
    expect(done).toMatchObject({
      status: 200,
      message: expect.stringContaining('stored the grant "@alice"'),
    });
    // PKCE and state went to the provider; the verifier never left the server.
    const authorize = new URL(done.urls.find((u) => u.startsWith(`${oidc.issuer}/auth`))!);
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorize.searchParams.get('redirect_uri')).toBe(`${base}/callback`);
    expect(authorize.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const stored = await engine.service.app.grants.find('@alice');
    expect(stored?.grant).toMatchObject({ label: '@alice', subject: 'alice', state: 'active' });
    secrets.add(stored!.tokens.accessToken());
    secrets.add(stored!.tokens.refreshToken());
    expect((await oidc.introspect(stored!.tokens.accessToken())).active).toBe(true);
    const token = await api('/v1/grants/@alice/token', { key: adminKey });
    expect(token.status).toBe(200);

    const before = await grantsNow();
    const again = await consentInBrowser(link.url, 'alice');
    expect(again).toMatchObject({ status: 410, message: expect.stringMatching(/already used/) });
    // Refused before the provider was asked: the browser never left grantkeeper.
    expect(again.urls.every((u) => u.startsWith(base))).toBe(true);
    expect(await grantsNow()).toEqual(before);
  });

  it('refuses an expired link', async () => {
    const past = Date.now() - 2 * 3600_000;
    const expired = await createConsentLink(
      { ...consentLinkDeps(engine.service.app, base), now: () => past },
      { client: CLIENT, label: '@late', ttlMs: 3600_000 },
    );
    secrets.add(expired.url.split('/').pop() ?? '');
    const outcome = await consentInBrowser(expired.url, 'late');
    expect(outcome).toMatchObject({ status: 410, message: expect.stringMatching(/expired/) });
    expect(await engine.service.app.grants.find('@late')).toBeUndefined();
  });

  it("writes only its own label: a link for A never touches B, even when B's account consents", async () => {
    const bob = await consentInBrowser((await newLink('@bob')).url, 'bob');
    expect(bob.status).toBe(200);
    const before = (await grantsNow()).find((g) => g.label === '@bob');
    const other = await consentInBrowser((await newLink('@bob-second')).url, 'bob');
    expect(other).toMatchObject({ status: 200, message: expect.stringContaining('"@bob-second"') });
    const after = await grantsNow();
    expect(after.find((g) => g.label === '@bob')).toEqual(before);
    expect(after.find((g) => g.label === '@bob-second')).toMatchObject({ subject: 'bob' });
    expect(after.find((g) => g.label === '@bob-second')?.id).not.toBe(before?.id);
  });

  it("refuses another account's consent on an existing label, and keeps the link for its owner", async () => {
    const alice = (await engine.service.app.grants.find('@alice'))!.grant;
    const link = await newLink('@alice');
    const before = await grantsNow();
    const mallory = await consentInBrowser(link.url, 'mallory');
    expect(mallory.status).toBe(409);
    expect(mallory.message).toMatch(/belongs to another account; nothing was stored/);
    expect(await grantsNow()).toEqual(before);

    // The refusal did not spend the link: alice renews her own grant with it, same id and history.
    const renewed = await consentInBrowser(link.url, 'alice');
    expect(renewed).toMatchObject({
      status: 200,
      message: expect.stringContaining('renewed the grant "@alice"'),
    });
    const after = (await engine.service.app.grants.find('@alice'))!.grant;
    expect(after.id).toBe(alice.id);
    expect(after.version).toBeGreaterThan(alice.version);
    expect(after.subject).toBe('alice');
  });

  it('answers bad links and bad redirects with a clear page, changing nothing', async () => {
    const before = await grantsNow();
    const page = async (path: string) => {
      const res = await api(path);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const html = await res.text();
      expect(html).not.toMatch(/\n\s+at |Error:/);
      return { status: res.status, message: /<p id="message">([^<]*)<\/p>/.exec(html)?.[1] ?? html };
    };
    expect(await page('/connect/not-a-link')).toMatchObject({
      status: 400,
      message: expect.stringMatching(/not a grantkeeper consent link/),
    });
    expect(await page(`/connect/${'A'.repeat(43)}`)).toMatchObject({
      status: 404,
      message: expect.stringMatching(/no such consent link/),
    });
    expect(await page(`/connect/${'A'.repeat(43)}%00`)).toMatchObject({ status: 400 });
    expect(await page('/callback')).toMatchObject({
      status: 400,
      message: expect.stringMatching(/no valid state/),
    });
    expect(await page('/callback?code=abc')).toMatchObject({
      status: 400,
      message: expect.stringMatching(/no valid state/),
    });

    // A started consent: the provider URL carries the state; its verifier stays with us.
    const link = await newLink('@carol');
    const start = async () => {
      const res = await api(new URL(link.url).pathname);
      expect(res.status).toBe(302);
      expect(res.headers.get('referrer-policy')).toBe('no-referrer');
      const location = res.headers.get('location')!;
      const state = new URL(location).searchParams.get('state')!;
      secrets.add(state);
      return { location, state };
    };
    const { location, state } = await start();
    expect(location.startsWith(`${oidc.issuer}/auth?`)).toBe(true);
    expect(location).not.toMatch(/code_verifier/);
    const tampered = `${state.slice(0, -2)}${state.endsWith('AA') ? 'BB' : 'AA'}`;
    expect(await page(`/callback?state=${tampered}&code=forged`)).toMatchObject({
      status: 400,
      message: expect.stringMatching(/answers no consent in progress/),
    });
    expect(await page(`/callback?state=${state}&state=${state}&code=x`)).toMatchObject({ status: 400 });

    // The provider's error, in plain words; the link can be opened again.
    const denied = await oidc.driveConsent(location, { deny: true, accountId: 'carol' });
    expect(denied.searchParams.get('error')).toBe('access_denied');
    expect(await page(`${denied.pathname}${denied.search}`)).toMatchObject({
      status: 400,
      message: expect.stringMatching(/consent was refused.*access_denied.*opened again/),
    });
    // A redirect without a code.
    const second = await start();
    expect(await page(`/callback?state=${second.state}`)).toMatchObject({
      status: 400,
      message: expect.stringMatching(/no authorization code/),
    });
    // A state already answered is not answered twice.
    expect(await page(`/callback?state=${second.state}&code=late`)).toMatchObject({ status: 400 });
    // RFC 9207: an answer naming another authorization server (a mix-up) is refused.
    const mixed = await start();
    expect(
      await page(`/callback?state=${mixed.state}&code=x&iss=${encodeURIComponent('https://evil.example')}`),
    ).toMatchObject({ status: 400, message: expect.stringMatching(/another authorization server/) });
    // A code the provider never issued: its refusal, as one line.
    const third = await start();
    expect(await page(`/callback?state=${third.state}&code=never-issued`)).toMatchObject({
      status: 502,
      message: expect.stringMatching(/refused to exchange the authorization code/),
    });
    expect(await grantsNow()).toEqual(before);
    expect((await engine.service.app.consentLinks.findByTokenHash(hashOf(link.url)))?.usedAt).toBeNull();

    // Nothing was spent: the same link still works, once.
    const { location: fresh } = await start();
    const redirect = await oidc.driveConsent(fresh, { accountId: 'carol' });
    secrets.add(redirect.searchParams.get('code') ?? '');
    expect(await page(`${redirect.pathname}${redirect.search}`)).toMatchObject({ status: 200 });
    expect((await engine.service.app.grants.find('@carol'))?.grant.subject).toBe('carol');
  });

  it('two tabs racing through one link store one grant; the other is told the link was used', async () => {
    const link = await newLink('@frank');
    const redirects = [];
    for (const _tab of [1, 2]) {
      const res = await api(new URL(link.url).pathname);
      const location = res.headers.get('location')!;
      secrets.add(new URL(location).searchParams.get('state') ?? '');
      const redirect = await oidc.driveConsent(location, { accountId: 'frank' });
      secrets.add(redirect.searchParams.get('code') ?? '');
      redirects.push(`${redirect.pathname}${redirect.search}`);
    }
    const answers = await Promise.all(redirects.map(async (path) => (await api(path)).status));
    expect(answers.sort()).toEqual([200, 410]);
    expect((await grantsNow()).filter((g) => g.label === '@frank')).toHaveLength(1);
  });

  it('POST /v1/links: admin keys only, and bad bodies get one clear JSON error', async () => {
    const post = async (body: unknown, key = adminKey) => {
      const res = await api('/v1/links', { method: 'POST', key, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { error: string; message: string } };
    };
    expect(await post({ client: CLIENT, label: '@r' }, readerKey)).toMatchObject({ status: 403 });
    expect((await api('/v1/links', { method: 'POST', body: '{}' })).status).toBe(401);
    expect(await post({ client: 'nope', label: '@x' })).toMatchObject({
      status: 404,
      body: { error: 'not_found' },
    });
    expect(await post({ client: CLIENT, label: 'has space' })).toMatchObject({
      status: 400,
      body: { error: 'bad_request' },
    });
    expect(await post({ client: CLIENT, label: '@x', extra: 1 })).toMatchObject({ status: 400 });
    expect(await post({ client: CLIENT, label: '@x', expires_in: 10 })).toMatchObject({ status: 400 });
    await engine.service.app.clients.upsert({
      name: 'links-other',
      profile,
      clientId: 'other',
      authMethod: 'none',
      scopes: ['openid'],
      now: Date.now(),
    });
    expect(await post({ client: 'links-other', label: '@alice' })).toMatchObject({
      status: 409,
      body: { error: 'label_taken', message: expect.stringMatching(/belongs to another client/) },
    });
    const made = await post({ client: CLIENT, label: '@dave', expires_in: 600 });
    expect(made.status).toBe(201);
    expect(Date.parse((made.body as unknown as { expires_at: string }).expires_at)).toBeGreaterThan(
      Date.now(),
    );
    secrets.add((made.body as unknown as { url: string }).url.split('/').pop() ?? '');
  });

  it('grantkeeper link prints a link that works in a browser', async () => {
    const env = {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: sealingKey,
      GRANTKEEPER_PUBLIC_URL: base,
    };
    const printed = await runCli(['link', CLIENT, '--label', '@erin', '--expires', '2h'], env);
    expect(printed.code).toBe(0);
    const url = printed.stdout.trim();
    expect(url).toMatch(new RegExp(`^${base}/connect/[A-Za-z0-9_-]{43}$`));
    expect(printed.stderr).toMatch(/usable once, until .*\/callback as a redirect URI/);
    secrets.add(url.split('/').pop() ?? '');
    expect(await consentInBrowser(url, 'erin')).toMatchObject({ status: 200 });

    const bad = await runCli(['link', CLIENT, '--label', '@erin', '--expires', '3w'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected a number and a unit/);
    const { GRANTKEEPER_PUBLIC_URL: _unset, ...withoutUrl } = env;
    const unset = await runCli(['link', CLIENT, '--label', '@erin'], withoutUrl);
    expect(unset.code).toBe(1);
    expect(unset.stderr.trim()).toMatch(/^grantkeeper: consent links need .*GRANTKEEPER_PUBLIC_URL/);
  });

  it('a grant.needs_reconsent webhook carries a fresh link that repairs the grant in place', async () => {
    const bob = (await engine.service.app.grants.find('@bob'))!;
    expect(await revokeRefreshToken(oidc, bob.tokens.refreshToken())).toBe(200);
    const refused = await api('/v1/grants/@bob/refresh', { method: 'POST', key: adminKey });
    expect(refused.status).toBe(409);
    const hook = await waitFor(
      () =>
        receiver.received.find(
          (r) => r.json.type === 'grant.needs_reconsent' && r.json.grant.id === bob.grant.id,
        ),
      'the needs_reconsent webhook',
      15_000,
    );
    const link = hook.json.consent_link as { url: string; label: string; client: string; expires_at: string };
    expect(link).toMatchObject({ label: '@bob', client: CLIENT });
    expect(link.url).toMatch(new RegExp(`^${base}/connect/`));
    secrets.add(link.url.split('/').pop() ?? '');
    expect(await consentInBrowser(link.url, 'bob')).toMatchObject({ status: 200 });
    const repaired = (await engine.service.app.grants.find('@bob'))!.grant;
    expect(repaired).toMatchObject({ id: bob.grant.id, state: 'active' });
    expect((await api('/v1/grants/@bob/token', { key: adminKey })).status).toBe(200);
  });

  it('no link token, state or code reaches a log line, and the store holds only their hashes', async () => {
    expect(csp).toEqual([]);
    expect(secrets.size).toBeGreaterThan(10);
    expect(leakedSecrets(engine.logs.join('\n'), secrets)).toEqual([]);
    const linkTokens = [...secrets].filter((s) => /^[A-Za-z0-9_-]{43}$/.test(s));
    expect(leakedSecrets(readDbFiles(join(dataDir, DB_FILE_NAME)), linkTokens)).toEqual([]);
    expect(engine.logs.some((l) => l.includes('consent link stored a grant'))).toBe(true);
  });
});

/** The store's own rule (sha256 hex of the URL's token), to look a link up. */
function hashOf(url: string): string {
  return createHash('sha256')
    .update(url.split('/').pop() ?? '')
    .digest('hex');
}
