import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SeedOptions, seedGrant } from '../../src/consent/seed-grant.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { type CliResult, runCli, spawnCli } from '../support/cli.js';
import { type Engine, removeDir, startEngine, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { idTokenSigner } from '../support/id-tokens.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets, readDbFiles } from '../support/secret-scan.js';
import { startTokenProxy, type TokenProxy, type TokenRewrite } from '../support/token-proxy.js';

const CLIENT_ID = 'gk-native';
const SECRET = `seed-test-secret-${randomBytes(8).toString('hex')}`;
const ANY_PORT_REDIRECT = 'http://127.0.0.1/callback';

interface Browser {
  /** Plays the user: consent (or denial), then the redirect to our listener, as a browser would. */
  deny?: boolean;
  /** Who signs in (default the harness's test-user). */
  accountId?: string;
  /** Requests that reach the listener before the real redirect (a stale tab, a forged local page). */
  strays?: (redirect: URL) => URL[];
  tamper?: (redirect: URL) => URL;
  /** Follow the redirect this many times at once (a double-clicked link). */
  times?: number;
  /** Open the page but never answer it (the user walked away). */
  idle?: boolean;
}

describe('seed: consent capture against oidc-provider', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let engine: Engine;
  let dataDir: string;
  let key: string;
  let proxy: TokenProxy;

  beforeAll(async () => {
    [redis, oidc] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 4,
        // Like Google's and Microsoft's, its id_tokens name the account.
        claimsInIdToken: true,
        // Mallory's provider lets her claim Alice's address: her derived label is Alice's.
        accountClaims: { mallory: { email: 'alice@example.test' } },
        clients: [
          {
            clientId: CLIENT_ID,
            clientSecret: SECRET,
            redirectUris: [ANY_PORT_REDIRECT],
            applicationType: 'native',
          },
        ],
      }),
    ]);
    dataDir = tempDataDir();
    key = testKey();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key });
    const profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const add = (name: string, extra: Partial<typeof profile> = {}) =>
      engine.service.app.clients.upsert({
        name,
        profile: { ...profile, ...extra },
        clientId: CLIENT_ID,
        clientSecret: SECRET,
        authMethod: 'client_secret_basic',
        scopes: ['openid', 'email'],
        redirectUri: ANY_PORT_REDIRECT,
        now: Date.now(),
      });
    await add('oidc');
    // Without prompt=consent oidc-provider drops offline_access: a consent with no refresh token.
    await add('no-offline', { extraAuthorizeParams: {} });
    proxy = await startTokenProxy(oidc.tokenEndpoint);
    await add('proxied', { tokenEndpoint: proxy.url });
    // As stored by a version that knew no key sets.
    const { jwksUri: _, ...withoutKeySet } = profile;
    await engine.service.app.clients.upsert({
      name: 'no-jwks',
      profile: { ...withoutKeySet, tokenEndpoint: proxy.url },
      clientId: CLIENT_ID,
      clientSecret: SECRET,
      authMethod: 'client_secret_basic',
      scopes: ['openid', 'email'],
      redirectUri: ANY_PORT_REDIRECT,
      now: Date.now(),
    });
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close(), proxy?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const app = () => engine.service.app;

  function io(browser?: Browser) {
    const messages = new PassThrough();
    const input = new PassThrough();
    let text = '';
    messages.on('data', (d) => {
      text += d;
    });
    const pages: Array<Promise<{ status: number; body: string }>> = [];
    const strayPages: Array<{ status: number; body: string }> = [];
    let authUrl: string | undefined;
    return {
      io: {
        messages,
        input,
        ...(browser
          ? {
              openBrowser: async (url: string) => {
                authUrl = url;
                if (browser.idle) return;
                // Not awaited: the tab waits for the grant to be stored, as a real browser does.
                const redirect = oidc
                  .driveConsent(url, {
                    deny: browser.deny ?? false,
                    ...(browser.accountId ? { accountId: browser.accountId } : {}),
                  })
                  .then(async (r) => {
                    for (const stray of browser.strays?.(new URL(r)) ?? []) {
                      const res = await fetch(stray);
                      strayPages.push({ status: res.status, body: await res.text() });
                    }
                    return r;
                  });
                for (let i = 0; i < (browser.times ?? 1); i++) {
                  pages.push(
                    redirect.then(async (r) => {
                      const res = await fetch(browser.tamper ? browser.tamper(new URL(r)) : r);
                      return { status: res.status, body: await res.text() };
                    }),
                  );
                }
              },
            }
          : {}),
      },
      input,
      text: () => text,
      pages,
      strayPages,
      authUrl: () => new URL(authUrl ?? ''),
      listenerUrl: () => new URL(new URL(authUrl ?? '').searchParams.get('redirect_uri') ?? ''),
    };
  }

  const seed = (session: ReturnType<typeof io>, options: Partial<SeedOptions> = {}) =>
    seedGrant(
      {
        grants: app().grants,
        clients: app().clients,
        tokenClient: engine.service.engine.tokenClient,
        timing: engine.service.engine.refresher.timing,
        scheduler: engine.service.engine.scheduler,
        io: session.io,
      },
      { client: 'oidc', mode: 'loopback', timeoutMs: 15_000, ...options },
    );

  /** Whose access token a grant holds now; read again when a refresh expired the one read. */
  async function subjectOfStoredToken(id: string): Promise<unknown> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const answer = await oidc.introspect((await app().grants.get(id))!.tokens.accessToken());
      if (answer.active) return answer.sub;
    }
    return undefined;
  }

  async function expectNoListener(url: URL) {
    await expect(fetch(url)).rejects.toThrow();
  }

  it('loopback: stores the grant sealed, answers the browser, and the worker refreshes it', async () => {
    const session = io({});
    const result = await seed(session, { label: 'loopback-user' });
    expect(result).toMatchObject({ replaced: false, scheduled: true, identity: { subject: 'test-user' } });
    // openid was asked for, so a nonce went with it.
    expect(session.authUrl().searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const page = await session.pages[0];
    expect(page?.status).toBe(200);
    expect(page?.body).toContain('stored the grant');
    await expectNoListener(session.listenerUrl());
    expect(session.listenerUrl().port).not.toBe('');

    const stored = (await app().grants.get(result.grant.id))!.grant;
    const opened = (await app().grants.get(result.grant.id))!.tokens;
    const tokens = { accessToken: opened.accessToken(), refreshToken: opened.refreshToken() };
    expect((await oidc.introspect(tokens.accessToken)).active).toBe(true);
    expect(
      leakedSecrets(readDbFiles(join(dataDir, DB_FILE_NAME)), [
        tokens.accessToken,
        tokens.refreshToken,
        SECRET,
      ]),
    ).toEqual([]);
    expect(leakedSecrets(session.text(), [tokens.accessToken, tokens.refreshToken, SECRET])).toEqual([]);

    const before = oidc.counters.refreshes;
    const refreshed = await waitFor(async () => {
      const g = (await app().grants.get(result.grant.id))?.grant;
      return g && g.version > stored.version && g.lastRefreshedAt ? g : undefined;
    }, 'the worker to refresh the seeded grant');
    expect(refreshed.state).toBe('active');
    expect(oidc.counters.refreshes).toBeGreaterThan(before);
  });

  it('manual: reads the pasted redirect URL, and re-seeding the label keeps its id', async () => {
    const first = (await app().grants.find('loopback-user'))!.grant;
    const session = io();
    const pending = seed(session, { mode: 'manual', label: 'loopback-user' });
    const url = await waitFor(
      () => /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/.exec(session.text())?.[1],
      'the URL',
    );
    const redirect = await oidc.driveConsent(url);
    expect(redirect.href.startsWith(`${ANY_PORT_REDIRECT}?`)).toBe(true);
    session.input.write(`${redirect.href}\n`);
    const result = await pending;
    expect(result.replaced).toBe(true);
    expect(result.grant.id).toBe(first.id);
    expect(result.grant.version).toBeGreaterThan(first.version);
  });

  it('manual: accepts the bare code', async () => {
    const session = io();
    const pending = seed(session, { mode: 'manual', label: 'bare-code' });
    const url = await waitFor(
      () => /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/.exec(session.text())?.[1],
      'the URL',
    );
    const redirect = await oidc.driveConsent(url);
    session.input.write(`${redirect.searchParams.get('code')}\n`);
    expect((await pending).grant.label).toBe('bare-code');
  });

  describe('failures store nothing and leave no listener', () => {
    const cases: Array<[string, Browser, Partial<SeedOptions>, RegExp, number | undefined]> = [
      ['access_denied', { deny: true }, {}, /consent was refused.*access_denied/, 400],
      [
        'no refresh token',
        {},
        { client: 'no-offline' },
        /returned no refresh token: add the offline_access scope/,
        400,
      ],
      [
        'a callback to the wrong path',
        {
          tamper: (r) => {
            r.pathname = '/elsewhere';
            return r;
          },
        },
        {},
        /redirected to \/elsewhere, but grantkeeper listens on \/callback/,
        400,
      ],
      ['a timeout', { idle: true }, { timeoutMs: 1000 }, /no consent redirect arrived within 1 s/, undefined],
    ];

    for (const [name, browser, options, message, status] of cases) {
      it(name, async () => {
        const count = (await app().grants.list()).length;
        const session = io(browser);
        await expect(
          seed(session, { label: `fail-${randomBytes(3).toString('hex')}`, ...options }),
        ).rejects.toThrow(message);
        if (status !== undefined) {
          const page = await session.pages[0];
          expect(page?.status).toBe(status);
          expect(page?.body).toMatch(/Not completed/);
        }
        expect((await app().grants.list()).length).toBe(count);
        await expectNoListener(session.listenerUrl());
      });
    }

    it('a second callback is turned away and changes nothing', async () => {
      const session = io({ times: 2 });
      const result = await seed(session, { label: 'double-click' });
      const statuses = (await Promise.allSettled(session.pages)).map((p) =>
        p.status === 'fulfilled' ? p.value.status : 'refused',
      );
      // The second request either reached the listener while the first was being handled, or
      // found it already closed; it never produced a second grant.
      expect(statuses).toContain(200);
      expect(statuses.filter((s) => s !== 200).every((s) => s === 409 || s === 'refused')).toBe(true);
      expect((await app().grants.list()).filter((g) => g.label === 'double-click')).toHaveLength(1);
      expect(result.grant.label).toBe('double-click');
      await expectNoListener(session.listenerUrl());
    });
  });

  it('a wrong-state or state-less request to the callback gets 400, and the real redirect still completes the seed', async () => {
    const session = io({
      strays: (real) => {
        const forged = new URL(real);
        forged.searchParams.set('state', 'forged');
        forged.searchParams.set('code', 'attacker-code');
        const stateless = new URL(real);
        stateless.searchParams.delete('state');
        return [forged, stateless];
      },
    });
    const result = await seed(session, { label: 'after-strays' });
    expect(session.strayPages.map((p) => p.status)).toEqual([400, 400]);
    expect(session.strayPages[0]?.body).toMatch(/state that does not match.*ignored/);
    const page = await session.pages[0];
    expect(page?.status).toBe(200);
    expect(result.grant.label).toBe('after-strays');
    expect((await app().grants.find('after-strays'))?.grant.state).toBe('active');
    await expectNoListener(session.listenerUrl());
  });

  describe('a consent never takes over another account grant', () => {
    it('without --label, account B whose name is account A grant label is refused and A is unchanged', async () => {
      const alice = await seed(io({ accountId: 'alice' }));
      expect(alice.grant).toMatchObject({ label: 'alice@example.test', subject: 'alice' });
      const count = (await app().grants.list()).length;

      const session = io({ accountId: 'mallory' });
      await expect(seed(session)).rejects.toThrow(
        /named "alice@example\.test", but grant "alice@example\.test" \(g_[\w-]{12}\) belongs to another account; nothing was stored.*--label/,
      );
      const page = await session.pages[0];
      expect(page?.status).toBe(400);
      expect(page?.body).toMatch(/belongs to another account/);
      // The worker refreshes Alice's grant meanwhile (4 s tokens), so its tokens are checked by whose they are.
      const after = (await app().grants.get(alice.grant.id))!.grant;
      expect(after).toMatchObject({
        subject: 'alice',
        label: 'alice@example.test',
        clientRef: alice.grant.clientRef,
      });
      expect(await subjectOfStoredToken(alice.grant.id)).toBe('alice');
      expect((await app().grants.list()).length).toBe(count);
      expect((await app().grants.list()).some((g) => g.subject === 'mallory')).toBe(false);
      await expectNoListener(session.listenerUrl());
    });

    it('the same account re-consents in place without --label; another one with its own --label sits beside it', async () => {
      const before = (await app().grants.find('alice@example.test'))!.grant;
      const again = await seed(io({ accountId: 'alice' }));
      expect(again).toMatchObject({ replaced: true, grant: { id: before.id, subject: 'alice' } });
      const beside = await seed(io({ accountId: 'mallory' }), { label: 'mallory' });
      expect(beside).toMatchObject({ replaced: false, grant: { label: 'mallory', subject: 'mallory' } });
      expect((await app().grants.find('alice@example.test'))?.grant.subject).toBe('alice');
    });

    it('a grant stored without an account id is not replaced by a derived label', async () => {
      const legacy = await app().grants.saveConsent({
        clientRef: (await app().clients.findByName('oidc'))!.id,
        label: 'legacy@example.test',
        accessToken: 'legacy-at',
        refreshToken: 'legacy-rt',
        // Due long after the schedule horizon: the worker leaves its fake tokens alone.
        accessExpiresAt: Date.now() + 30 * 86_400_000,
        accessLifetimeMs: 30 * 86_400_000,
        refreshTokenUsedAt: Date.now(),
        nextRefreshAt: Date.now() + 30 * 86_400_000,
        now: Date.now(),
      });
      await expect(seed(io({ accountId: 'legacy' }))).rejects.toThrow(
        /stored without an account id.*--label/,
      );
      expect((await app().grants.get(legacy.id))?.grant).toMatchObject({
        subject: null,
        version: legacy.version,
      });
      // The operator says it is the same account: replaced in place, and its subject recorded.
      const repaired = await seed(io({ accountId: 'legacy' }), { label: 'legacy@example.test' });
      expect(repaired).toMatchObject({ replaced: true, grant: { id: legacy.id, subject: 'legacy' } });
    });
  });

  describe('id_tokens are validated before any claim names a grant', () => {
    const claimsOf = (jwt: string) =>
      JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >;
    const encode = (claims: object) => Buffer.from(JSON.stringify(claims)).toString('base64url');
    const idTokenOf = (body: Record<string, unknown>) => String(body.id_token);
    /** Signed again with the server's own key: only the claim checks can catch it. */
    const resigned =
      (change: (claims: Record<string, unknown>) => Record<string, unknown>): TokenRewrite =>
      async (body) => ({
        ...body,
        id_token: await oidc.signWithServerKey(change(claimsOf(idTokenOf(body)))),
      });
    const seconds = () => Math.floor(Date.now() / 1000);

    const cases: Array<[string, () => Promise<TokenRewrite>, RegExp]> = [
      [
        'a tampered id_token (payload changed, signature kept)',
        async () => (body) => {
          const [header, , signature] = idTokenOf(body).split('.');
          const claims = { ...claimsOf(idTokenOf(body)), email: 'victim@example.test' };
          return { ...body, id_token: `${header}.${encode(claims)}.${signature}` };
        },
        /signature does not verify/,
      ],
      [
        "an id_token signed by another key under the server's key id",
        async () => {
          const stranger = await idTokenSigner('gk-test-rs256');
          return async (body) => ({ ...body, id_token: await stranger.sign(claimsOf(idTokenOf(body))) });
        },
        /signature does not verify/,
      ],
      [
        'a wrong-audience id_token',
        async () => resigned((c) => ({ ...c, aud: 'someone-else' })),
        /audience \(aud\) is not this client id/,
      ],
      [
        'an expired id_token',
        async () => resigned((c) => ({ ...c, iat: seconds() - 7200, exp: seconds() - 3600 })),
        /expired \(exp\)/,
      ],
      [
        'a wrong-nonce id_token',
        async () => resigned((c) => ({ ...c, nonce: 'a-nonce-from-another-consent' })),
        /nonce is not the one sent with this consent request/,
      ],
    ];

    for (const [name, makeRewrite, reason] of cases) {
      it(`${name} stores nothing and says why`, async () => {
        proxy.rewrite = await makeRewrite();
        try {
          const count = (await app().grants.list()).length;
          const session = io({});
          const err = await seed(session, { client: 'proxied' }).then(
            () => undefined,
            (e: unknown) => e as Error,
          );
          expect(err?.message).toMatch(/^the provider's id_token failed validation: /);
          expect(err?.message).toMatch(reason);
          expect(err?.message).toMatch(/nothing was stored$/);
          const page = await session.pages[0];
          expect(page?.status).toBe(400);
          expect(page?.body).toMatch(reason);
          const issued = proxy.idTokens.at(-1) ?? '';
          expect(leakedSecrets(`${err?.message} ${page?.body} ${session.text()}`, [issued])).toEqual([]);
          expect((await app().grants.list()).length).toBe(count);
          await expectNoListener(session.listenerUrl());
        } finally {
          proxy.rewrite = undefined;
        }
      });
    }

    it("the nonce sent is the one in the server's id_token, whose claims then name the account", async () => {
      const session = io({});
      const result = await seed(session, { client: 'proxied', label: 'proxied-ok' });
      const sent = session.authUrl().searchParams.get('nonce');
      expect(sent).toBeTruthy();
      expect(claimsOf(proxy.idTokens.at(-1) ?? '').nonce).toBe(sent);
      expect(result.identity).toEqual({ subject: 'test-user', name: 'test-user@example.test' });
    });

    it('a profile without a key set never reads id_token claims: userinfo names the account', async () => {
      proxy.rewrite = (body) => ({
        ...body,
        id_token: `${encode({ alg: 'none' })}.${encode({ ...claimsOf(idTokenOf(body)), sub: 'victim', email: 'victim@example.test' })}.`,
      });
      try {
        const result = await seed(io({}), { client: 'no-jwks', label: 'no-jwks' });
        expect(result.identity).toEqual({ subject: 'test-user', name: 'test-user@example.test' });
        expect(result.grant.subject).toBe('test-user');
      } finally {
        proxy.rewrite = undefined;
      }
    });
  });

  describe('through the CLI', () => {
    const env = () => ({ GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: key, REDIS_URL: redis.url });
    const URL_IN = /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/;

    it('client add reads the secret from stdin; seed --no-browser answers the loopback redirect', async () => {
      const add = spawnCli(
        [
          'client',
          'add',
          'cli-oidc',
          '--provider',
          'oidc',
          '--issuer',
          oidc.issuer,
          '--client-id',
          CLIENT_ID,
          '--client-secret-stdin',
          '--redirect-uri',
          ANY_PORT_REDIRECT,
          '--scopes',
          'openid email',
          '--json',
        ],
        env(),
        { stdin: true },
      );
      add.child.stdin?.end(`${SECRET}\n`);
      const added = await add.exited;
      expect(added.code).toBe(0);
      expect(JSON.parse(added.stdout)).toMatchObject({
        name: 'cli-oidc',
        provider: 'oidc',
        has_secret: true,
        public: false,
      });

      const cli = spawnCli(['seed', 'cli-oidc', '--no-browser', '--json', '--timeout', '20'], env());
      const url = await waitFor(() => URL_IN.exec(cli.stderr())?.[1], 'the consent URL on stderr');
      const res = await fetch(await oidc.driveConsent(url));
      const page = `${res.status} ${await res.text()}`;
      const done = await cli.exited;
      // On failure, the CLI's own last line says why.
      expect(`${page} ${done.stderr}`).toMatch(/^200 /);
      expect(done.code).toBe(0);
      const out = JSON.parse(done.stdout);
      expect(out).toMatchObject({
        client: 'cli-oidc',
        subject: 'test-user',
        replaced: false,
        scheduled: true,
      });
      // No label given: the id_token names only the subject, so userinfo's email names the grant.
      expect(out.label).toBe('test-user@example.test');
      const opened = (await app().grants.get(out.id))!.tokens;
      const tokens = { accessToken: opened.accessToken(), refreshToken: opened.refreshToken() };
      expect(
        leakedSecrets(done.stdout + done.stderr + added.stdout + added.stderr, [
          SECRET,
          tokens.accessToken,
          tokens.refreshToken,
        ]),
      ).toEqual([]);
    });

    it('seed --label shaped like a grant id exits 2 before any consent', async () => {
      const done = await runCli(
        ['seed', 'cli-oidc', '--label', 'g_AAAAAAAAAAAA', '--no-browser', '--timeout', '5'],
        env(),
      );
      expect(done.code).toBe(2);
      expect(done.stderr).toMatch(/shape of a grant id/);
      expect(done.stderr).not.toMatch(/Grant access in the browser/);
      expect(await app().grants.find('g_AAAAAAAAAAAA')).toBeUndefined();
    }, 60_000);

    const addHinted = (name: string, params: string[]) =>
      runCli(
        [
          'client',
          'add',
          name,
          '--provider',
          'oidc',
          '--issuer',
          oidc.issuer,
          '--client-id',
          CLIENT_ID,
          '--client-secret-env',
          'SEED_SECRET',
          '--redirect-uri',
          ANY_PORT_REDIRECT,
          '--scopes',
          'openid email',
          ...params.flatMap((p) => ['--authorize-param', p]),
          '--json',
        ],
        { ...env(), SEED_SECRET: SECRET },
      );

    it('client add --authorize-param reaches the authorization URL; client show lists it', async () => {
      const added = await addHinted('hinted', ['login_hint=ops@example.test', 'ui_locales=en']);
      expect(added.code).toBe(0);
      expect(JSON.parse(added.stdout).authorize_params).toEqual({
        login_hint: 'ops@example.test',
        ui_locales: 'en',
      });
      const shown = await runCli(['client', 'show', 'hinted'], env());
      expect(shown.stdout).toMatch(/authorize params:\s+login_hint=ops@example\.test ui_locales=en/);

      const cli = spawnCli(['seed', 'hinted', '--no-browser', '--label', 'hinted', '--timeout', '20'], env());
      const url = new URL(await waitFor(() => URL_IN.exec(cli.stderr())?.[1], 'the consent URL on stderr'));
      expect(url.searchParams.get('login_hint')).toBe('ops@example.test');
      expect(url.searchParams.get('ui_locales')).toBe('en');
      // The preset's own parameter is still sent under the client's.
      expect(url.searchParams.get('prompt')).toBe('consent');
      await fetch(await oidc.driveConsent(url.href));
      expect((await cli.exited).code).toBe(0);
      expect((await app().grants.find('hinted'))?.grant.state).toBe('active');
    }, 120_000);

    it('client add --authorize-param with a parameter the flow owns exits 2 and stores nothing', async () => {
      for (const param of ['state=x', 'redirect_uri=https://evil.example.com/cb']) {
        const done = await addHinted('owned', [param]);
        expect(done.code).toBe(2);
        expect(done.stderr).toMatch(/is set by grantkeeper itself and cannot be configured/);
      }
      expect(await app().clients.findByName('owned')).toBeUndefined();
    }, 120_000);

    it('seed --manual reads the pasted redirect from stdin', async () => {
      const cli = spawnCli(
        ['seed', 'cli-oidc', '--manual', '--label', 'cli-manual', '--timeout', '20'],
        env(),
        { stdin: true },
      );
      const url = await waitFor(() => URL_IN.exec(cli.stderr())?.[1], 'the consent URL on stderr');
      const redirect = await oidc.driveConsent(url);
      cli.child.stdin?.end(`${redirect.href}\n`);
      const done = await cli.exited;
      expect(done.stderr).not.toMatch(/\n\s+at /);
      // With stderr, so a failure says why.
      expect({ code: done.code, stderr: done.stderr }).toMatchObject({ code: 0 });
      expect(done.stdout).toMatch(/stored grant .*cli-manual/);
      expect((await app().grants.find('cli-manual'))?.grant.state).toBe('active');
    });

    it('revoke ends the grant at the provider (RFC 7009) and removes it', async () => {
      let result: CliResult | undefined;
      let refreshToken = '';
      // A refresh in flight holds the lease; revoke then asks to try again, as an operator would.
      for (let attempt = 0; attempt < 5; attempt++) {
        const grant = (await app().grants.find('cli-manual'))!;
        refreshToken = grant.tokens.refreshToken();
        result = await runCli(['revoke', 'cli-manual', '--json'], env());
        if (!/being refreshed right now/.test(result.stderr)) break;
      }
      expect(result?.code).toBe(0);
      expect(JSON.parse(result?.stdout ?? '')).toMatchObject({
        label: 'cli-manual',
        revoked: true,
        removed: true,
      });
      expect((await oidc.introspect(refreshToken)).active).toBe(false);
      expect(await app().grants.find('cli-manual')).toBeUndefined();
    });

    it('seed with a pasted forged redirect exits 1 with one clear line', async () => {
      const cli = spawnCli(
        ['seed', 'cli-oidc', '--manual', '--label', 'cli-forged', '--timeout', '20'],
        env(),
        { stdin: true },
      );
      await waitFor(() => URL_IN.exec(cli.stderr())?.[1], 'the consent URL on stderr');
      cli.child.stdin?.end(`${ANY_PORT_REDIRECT}?code=abc&state=forged\n`);
      const done = await cli.exited;
      expect(done.code).toBe(1);
      expect(done.stderr).toMatch(/grantkeeper: the redirect carries a state that does not match/);
      expect(await app().grants.find('cli-forged')).toBeUndefined();
    });
  });
});
