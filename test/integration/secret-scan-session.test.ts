import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { type CliResult, runCli, spawnCli } from '../support/cli.js';
import { type Engine, removeDir, startEngine, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets, readDbFiles } from '../support/secret-scan.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const CLIENT_ID = 'gk-session';
const REDIRECT = 'http://127.0.0.1/callback';
const URL_IN = /(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)/;

/**
 * A realistic operator session, then a search for every secret it involved in everything that is
 * not an authenticated token read: logs, Redis, CLI output, API error answers, webhooks, metrics.
 */
// About twenty CLI processes one after another: on a loaded 2-core machine that alone can take a minute.
describe('full-run secret scan', { timeout: 150_000 }, () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let receiver: WebhookReceiver;
  let engine: Engine;
  let dataDir: string;
  let poller: NodeJS.Timeout | undefined;
  const key = testKey();
  const clientSecret = `client-secret-${randomBytes(16).toString('hex')}`;
  const wrongSecret = `wrong-secret-${randomBytes(16).toString('hex')}`;
  const webhookSecret = `whsec-${randomBytes(16).toString('hex')}`;
  /** Every access and refresh token the grant ever held, as the db saw them. */
  const tokens = new Set<string>();
  const refreshTokens = new Set<string>();
  let apiKey = '';
  /** Output that must be clean: everything but `token`'s stdout and `apikey create`'s one-time print. */
  const scanned: string[] = [];
  let grantId = '';

  const env = () => ({
    GRANTKEEPER_DATA_DIR: dataDir,
    GRANTKEEPER_KEY: key,
    REDIS_URL: redis.url,
    SESSION_SECRET: clientSecret,
    WRONG_SECRET: wrongSecret,
  });
  const cli = async (args: string[], opts: { stdoutIsSecret?: boolean } = {}) => {
    const r = await runCli(args, env());
    scanned.push(`$ grantkeeper ${args.join(' ')}\n${opts.stdoutIsSecret ? '' : r.stdout}\n${r.stderr}`);
    return r;
  };
  const api = async (path: string, bearer?: string) => {
    const res = await fetch(`${engine.keeper!.url}${path}`, {
      headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
    });
    const text = await res.text();
    const entry = `${res.status} ${path}\n${JSON.stringify([...res.headers])}\n${text}`;
    return { status: res.status, text, entry };
  };
  const recordTokens = async () => {
    if (!grantId) return;
    const stored = await engine.service.app.grants.get(grantId);
    if (!stored) return;
    const t = { accessToken: stored.tokens.accessToken(), refreshToken: stored.tokens.refreshToken() };
    tokens.add(t.accessToken);
    tokens.add(t.refreshToken);
    refreshTokens.add(t.refreshToken);
  };
  /** The poller's latest read, awaited before the store closes. */
  let polling: Promise<void> = Promise.resolve();

  beforeAll(async () => {
    [redis, oidc, receiver] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 4,
        clients: [{ clientId: CLIENT_ID, clientSecret, redirectUris: [REDIRECT], applicationType: 'native' }],
      }),
      startWebhookReceiver(),
    ]);
    dataDir = tempDataDir();
  });

  afterAll(async () => {
    clearInterval(poller);
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close(), receiver?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('runs the session: client add, seed, refreshes, token, API read, a failure', async () => {
    // A plain-http issuer off loopback is refused before any request, in one clear line.
    const insecure = await cli([
      'client',
      'add',
      'insecure',
      '--provider',
      'oidc',
      '--issuer',
      'http://example.com',
      '--client-id',
      'x',
      '--client-secret-env',
      'SESSION_SECRET',
    ]);
    expect(insecure.code).not.toBe(0);
    expect(insecure.stderr).toMatch(
      /^grantkeeper: .*http:\/\/example\.com must use https \(plain http is only allowed on loopback/,
    );

    const added = await cli([
      'client',
      'add',
      'sess',
      '--provider',
      'oidc',
      '--issuer',
      oidc.issuer,
      '--client-id',
      CLIENT_ID,
      '--client-secret-env',
      'SESSION_SECRET',
      '--redirect-uri',
      REDIRECT,
      '--scopes',
      'openid email',
    ]);
    expect(added.code).toBe(0);

    const seed = spawnCli(
      ['seed', 'sess', '--no-browser', '--label', '@sess', '--json', '--timeout', '20'],
      env(),
    );
    const url = await waitFor(() => URL_IN.exec(seed.stderr())?.[1], 'the consent URL');
    expect((await fetch(await oidc.driveConsent(url))).status).toBe(200);
    const seeded: CliResult = await seed.exited;
    scanned.push(`$ grantkeeper seed\n${seeded.stdout}\n${seeded.stderr}`);
    expect(seeded.code).toBe(0);
    grantId = JSON.parse(seeded.stdout).id;

    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key,
      config: { webhookUrls: [receiver.url], failingAlertAfter: 1 },
      api: { webhookSecret },
    });
    await recordTokens();
    poller = setInterval(() => {
      polling = recordTokens();
    }, 15);

    const created = await cli(['apikey', 'create', 'scanner', '--admin'], { stdoutIsSecret: true });
    expect(created.code).toBe(0);
    apiKey = created.stdout.trim();
    expect(apiKey).toMatch(/^gk_/);

    const read = await api('/v1/grants/@sess/token?min_valid=1', apiKey);
    expect(read.status).toBe(200);
    tokens.add(JSON.parse(read.text).access_token);
    for (const [path, bearer] of [
      ['/v1/grants/@sess', apiKey],
      ['/v1/grants?events=5', apiKey],
      ['/v1/grants/@sess/token', `${apiKey}x`],
      ['/v1/grants/@nobody/token', apiKey],
      ['/metrics', undefined],
      ['/openapi.json', undefined],
    ] as const) {
      scanned.push((await api(path, bearer)).entry);
    }

    const token = await cli(['token', '@sess', '--min-valid', '1'], { stdoutIsSecret: true });
    expect(token.code).toBe(0);
    tokens.add(token.stdout.trim());
    // Listings run concurrently: each is its own process, and the scan only needs their output.
    const listings = await Promise.all(
      [
        ['grants', '--json'],
        ['grant', 'show', '@sess'],
        ['status', '--json'],
        ['client', 'show', 'sess'],
      ].map((args) => cli(args)),
    );
    expect(listings.map((r) => r.code)).toEqual([0, 0, 0, 0]);

    // Let the worker rotate the grant a few times.
    await waitFor(() => oidc.counters.refreshes >= 3, 'three refreshes by the worker', 30_000);

    // The failure: the client secret is changed to a wrong one, so the next refresh is refused.
    expect(
      (
        await cli([
          'client',
          'add',
          'sess',
          '--provider',
          'oidc',
          '--issuer',
          oidc.issuer,
          '--client-id',
          CLIENT_ID,
          '--client-secret-env',
          'WRONG_SECRET',
          '--redirect-uri',
          REDIRECT,
          '--scopes',
          'openid email',
        ])
      ).code,
    ).toBe(0);
    // A forced refresh within seconds of the worker's last one answers from it (invariant 10) and
    // asks the provider nothing, so ask until one reaches the provider or the worker has met it.
    const refused = await waitFor(
      async () => {
        const run = await cli(['refresh', '@sess']);
        return run.code === 0 ? undefined : run;
      },
      'a refresh refused for the wrong client secret',
      30_000,
    );
    expect(refused.code).toBe(1);
    // Either this refresh met invalid_client, or the worker met it first and the grant is stopped.
    expect(refused.stderr).toMatch(/invalid_client|client_error/);
    await waitFor(
      // One incident for the client, whose grant's own client_error alert it covers.
      () => receiver.received.some((w) => w.json.type === 'client.failing'),
      'the alert',
      15_000,
    );
    const dead = await api('/v1/grants/@sess/token', apiKey);
    expect(dead.status).toBe(409);
    scanned.push(dead.entry);
    await Promise.all(
      [['failed', '--json'], ['status'], ['token', '@sess'], ['grant', 'show', '@sess', '--json']].map(
        (args) => cli(args),
      ),
    );
    await recordTokens();
  });

  it('finds none of the secrets anywhere but the authenticated token reads', async () => {
    clearInterval(poller);
    await polling;
    // Completeness of the capture: with rotation on every use there is one refresh token per grant
    // issued by consent or refresh, and the poller saw each of them.
    expect(refreshTokens.size).toBe(1 + oidc.counters.refreshes);
    const secrets = [key, clientSecret, wrongSecret, webhookSecret, apiKey, ...tokens];
    expect(secrets.length).toBeGreaterThanOrEqual(5 + 2 * 4);
    const logs = engine.logs.join('\n');
    await engine.stop();
    const places = {
      logs,
      redis: await collectRedisText(redis.url),
      cli: scanned.join('\n'),
      webhooks: receiver.received.map((w) => `${JSON.stringify(w.headers)}\n${w.body}`).join('\n'),
      dbFiles: readDbFiles(join(dataDir, DB_FILE_NAME)),
    };
    const found = Object.fromEntries(
      Object.entries(places).map(([where, text]) => [where, leakedSecrets(text, secrets)]),
    );
    expect(found).toEqual({ logs: [], redis: [], cli: [], webhooks: [], dbFiles: [] });
    // The scan looked at real material, not empty strings.
    expect(places.logs.length).toBeGreaterThan(1000);
    expect(places.redis.length).toBeGreaterThan(100);
    expect(places.cli).toMatch(/client_error/);
    expect(places.logs).toMatch(/client_error/);
    expect(places.webhooks).toMatch(/client\.failing/);
  });
});
