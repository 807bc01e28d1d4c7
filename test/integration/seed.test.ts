import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_FILE_NAME } from '../../db/connection.js';
import { type SeedOptions, seedGrant } from '../../src/consent/seed-grant.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { type CliResult, runCli, spawnCli } from '../support/cli.js';
import { type Engine, removeDir, startEngine, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets, readDbFiles } from '../support/secret-scan.js';

const CLIENT_ID = 'gk-native';
const SECRET = `seed-test-secret-${randomBytes(8).toString('hex')}`;
const ANY_PORT_REDIRECT = 'http://127.0.0.1/callback';

interface Browser {
  /** Plays the user: consent (or denial), then the redirect to our listener, as a browser would. */
  deny?: boolean;
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

  beforeAll(async () => {
    [redis, oidc] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 4,
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
    add('oidc');
    // Without prompt=consent oidc-provider drops offline_access: a consent with no refresh token.
    add('no-offline', { extraAuthorizeParams: {} });
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close()]);
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
                const redirect = oidc.driveConsent(url, { deny: browser.deny ?? false });
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
        schedule: (grant) => engine.service.engine.scheduler.schedule([grant]),
        io: session.io,
      },
      { client: 'oidc', mode: 'loopback', timeoutMs: 15_000, ...options },
    );

  async function expectNoListener(url: URL) {
    await expect(fetch(url)).rejects.toThrow();
  }

  it('loopback: stores the grant sealed, answers the browser, and the worker refreshes it', async () => {
    const session = io({});
    const result = await seed(session, { label: 'loopback-user' });
    expect(result).toMatchObject({ replaced: false, scheduled: true, identity: { subject: 'test-user' } });
    const page = await session.pages[0];
    expect(page?.status).toBe(200);
    expect(page?.body).toContain('stored the grant');
    await expectNoListener(session.listenerUrl());
    expect(session.listenerUrl().port).not.toBe('');

    const stored = app().grants.get(result.grant.id)!;
    const tokens = app().grants.openTokens(stored);
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
    const refreshed = await waitFor(() => {
      const g = app().grants.get(result.grant.id);
      return g && g.version > stored.version && g.lastRefreshedAt ? g : undefined;
    }, 'the worker to refresh the seeded grant');
    expect(refreshed.state).toBe('active');
    expect(oidc.counters.refreshes).toBeGreaterThan(before);
  });

  it('manual: reads the pasted redirect URL, and re-seeding the label keeps its id', async () => {
    const first = app().grants.find('loopback-user')!;
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
      [
        'a wrong state',
        {
          tamper: (r) => {
            r.searchParams.set('state', 'forged');
            return r;
          },
        },
        {},
        /state that does not match/,
        400,
      ],
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
        const count = app().grants.list().length;
        const session = io(browser);
        await expect(
          seed(session, { label: `fail-${randomBytes(3).toString('hex')}`, ...options }),
        ).rejects.toThrow(message);
        if (status !== undefined) {
          const page = await session.pages[0];
          expect(page?.status).toBe(status);
          expect(page?.body).toMatch(/Not completed/);
        }
        expect(app().grants.list().length).toBe(count);
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
      expect(
        app()
          .grants.list()
          .filter((g) => g.label === 'double-click'),
      ).toHaveLength(1);
      expect(result.grant.label).toBe('double-click');
      await expectNoListener(session.listenerUrl());
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
        hasSecret: true,
        public: false,
      });

      const cli = spawnCli(['seed', 'cli-oidc', '--no-browser', '--json', '--timeout', '20'], env());
      const url = await waitFor(() => URL_IN.exec(cli.stderr())?.[1], 'the consent URL on stderr');
      const res = await fetch(await oidc.driveConsent(url));
      expect(`${res.status} ${await res.text()} ${cli.stderr()}`).toMatch(/^200 /);
      const done = await cli.exited;
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
      const tokens = app().grants.openTokens(app().grants.get(out.id)!);
      expect(
        leakedSecrets(done.stdout + done.stderr + added.stdout + added.stderr, [
          SECRET,
          tokens.accessToken,
          tokens.refreshToken,
        ]),
      ).toEqual([]);
    });

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
      expect(done.code).toBe(0);
      expect(done.stdout).toMatch(/stored grant .*cli-manual/);
      expect(app().grants.find('cli-manual')?.state).toBe('active');
    });

    it('revoke ends the grant at the provider (RFC 7009) and removes it', async () => {
      let result: CliResult | undefined;
      let refreshToken = '';
      // A refresh in flight holds the lease; revoke then asks to try again, as an operator would.
      for (let attempt = 0; attempt < 5; attempt++) {
        const grant = app().grants.find('cli-manual')!;
        refreshToken = app().grants.openTokens(grant).refreshToken;
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
      expect(app().grants.find('cli-manual')).toBeUndefined();
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
      expect(app().grants.find('cli-forged')).toBeUndefined();
    });
  });
});
