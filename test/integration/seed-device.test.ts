import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/config-schema.js';
import { createLogger } from '../../src/log/logger.js';
import { DEVICE_CODE_GRANT_TYPE } from '../../src/oauth/device-authorization.js';
import { type ProviderProfile, resolveProvider } from '../../src/oauth/providers.js';
import { openStoreContext, type StoreContext } from '../../src/service/store-context.js';
import { type CliProcess, spawnCli } from '../support/cli.js';
import { removeDir, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { DEFAULT_REDIRECT_URI, type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { startTokenProxy, type TokenProxy } from '../support/token-proxy.js';

const CLIENT_ID = 'gk-device';
const SECRET = `device-test-secret-${randomBytes(8).toString('hex')}`;
const COMPLETE_URI = /\(or open (http:\/\/127\.0\.0\.1:\d+\/device\?user_code=\S+) directly\)/;

/**
 * `seed --device` end to end against oidc-provider's RFC 8628 device flow. Two proxies sit in front
 * of it: one shortens the polling interval to 1 s (oidc-provider names none, so 5 s would apply),
 * the other lets a test answer a poll itself (slow_down, expired_token) and records when polls came.
 */
describe('seed --device: device-code consent against oidc-provider', () => {
  let oidc: OidcServer;
  let deviceProxy: TokenProxy;
  let tokenProxy: TokenProxy;
  let dataDir: string;
  let key: string;
  let app: StoreContext;
  let discovered: ProviderProfile;
  const deviceCodes: string[] = [];

  beforeAll(async () => {
    oidc = await startOidcServer({
      deviceFlow: true,
      claimsInIdToken: true,
      clients: [
        {
          clientId: CLIENT_ID,
          clientSecret: SECRET,
          redirectUris: [DEFAULT_REDIRECT_URI],
          authMethod: 'client_secret_basic',
        },
      ],
    });
    [deviceProxy, tokenProxy] = await Promise.all([
      startTokenProxy(oidc.deviceAuthorizationEndpoint),
      startTokenProxy(oidc.tokenEndpoint),
    ]);
    deviceProxy.rewrite = (body) => {
      deviceCodes.push(String(body.device_code));
      return { ...body, interval: 1 };
    };
    dataDir = tempDataDir();
    key = testKey();
    app = await openStoreContext(
      { config: configSchema.parse({ dataDir }), secrets: { key } },
      createLogger({ level: 'silent' }),
    );
    discovered = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const add = (name: string, profile: ProviderProfile) =>
      app.clients.upsert({
        name,
        profile,
        clientId: CLIENT_ID,
        clientSecret: SECRET,
        authMethod: 'client_secret_basic',
        scopes: ['openid', 'email'],
        now: Date.now(),
      });
    await add('device', {
      ...discovered,
      deviceAuthorizationEndpoint: deviceProxy.url,
      tokenEndpoint: tokenProxy.url,
    });
    const { deviceAuthorizationEndpoint: _none, ...withoutDevice } = discovered;
    await add('no-device', withoutDevice);
  });

  afterAll(async () => {
    await app?.close();
    await Promise.all([oidc?.close(), deviceProxy?.close(), tokenProxy?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const env = () => ({ GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: key });
  const seed = (label: string) =>
    spawnCli(['seed', 'device', '--device', '--label', label, '--json', '--timeout', '60'], env());
  const completeUri = (cli: CliProcess) =>
    waitFor(() => COMPLETE_URI.exec(cli.stderr())?.[1], 'the verification URI on stderr');
  const polls = () => tokenProxy.requests.filter((r) => r.form.get('grant_type') === DEVICE_CODE_GRANT_TYPE);

  it('discovers the device authorization endpoint', () => {
    expect(discovered.deviceAuthorizationEndpoint).toBe(oidc.deviceAuthorizationEndpoint);
  });

  it('stores the grant once the code is approved, honouring slow_down for every later poll', async () => {
    const before = polls().length;
    let slowedDown = false;
    tokenProxy.intercept = (form) => {
      if (form.get('grant_type') !== DEVICE_CODE_GRANT_TYPE || slowedDown) return undefined;
      slowedDown = true;
      return { status: 400, json: { error: 'slow_down' } };
    };
    const cli = seed('@device-user');
    const uri = await completeUri(cli);
    expect(cli.stderr()).toMatch(/enter the code\n\n {2}[A-Z]{4}-[A-Z]{4}\n/);
    // The person is slow: the code is confirmed after a few pending polls.
    await waitFor(() => polls().length >= before + 3, 'pending polls');
    await oidc.driveDeviceConsent(uri);
    const done = await cli.exited;
    tokenProxy.intercept = undefined;

    expect({ code: done.code, stderr: done.stderr }).toMatchObject({ code: 0 });
    expect(JSON.parse(done.stdout)).toMatchObject({
      label: '@device-user',
      client: 'device',
      replaced: false,
    });
    const stored = await app.grants.find('@device-user');
    expect(stored?.grant).toMatchObject({ state: 'active', subject: 'test-user' });
    expect((await oidc.introspect(stored!.tokens.refreshToken())).active).toBe(true);

    // After slow_down the interval is 1 + 5 s, and stays so.
    const mine = polls().slice(before);
    const gaps = mine.slice(1).map((p, i) => p.at - (mine[i]?.at ?? 0));
    expect(gaps.length).toBeGreaterThanOrEqual(2);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(5_900);
    // The device code redeems for tokens: it never reaches the terminal.
    expect(deviceCodes.length).toBeGreaterThan(0);
    for (const code of deviceCodes) expect(`${done.stdout}${done.stderr}`).not.toContain(code);
  }, 60_000);

  it('a denied request exits 1 in one line and stores nothing', async () => {
    const cli = seed('@device-denied');
    await oidc.driveDeviceConsent(await completeUri(cli), { abortCode: true });
    const done = await cli.exited;
    expect(done.code).toBe(1);
    expect(done.stderr).toMatch(
      /\ngrantkeeper: the request was denied at the provider \(access_denied\): nothing was stored\n$/,
    );
    expect(await app.grants.find('@device-denied')).toBeUndefined();
  }, 60_000);

  it('an expired code exits 1 saying to start again, and stores nothing', async () => {
    tokenProxy.intercept = (form) =>
      form.get('grant_type') === DEVICE_CODE_GRANT_TYPE
        ? { status: 400, json: { error: 'expired_token' } }
        : undefined;
    const cli = seed('@device-expired');
    await completeUri(cli);
    const done = await cli.exited;
    tokenProxy.intercept = undefined;
    expect(done.code).toBe(1);
    expect(done.stderr).toMatch(
      /grantkeeper: the device code expired before it was approved \(expired_token\): run seed --device again\n$/,
    );
    expect(await app.grants.find('@device-expired')).toBeUndefined();
  }, 60_000);

  it('a provider without device flow is a usage error naming the alternative', async () => {
    const cli = spawnCli(['seed', 'no-device', '--device', '--timeout', '10'], env());
    const done = await cli.exited;
    expect(done.code).toBe(2);
    expect(done.stderr).toBe(
      "grantkeeper: client no-device's provider (oidc) offers no device authorization endpoint: seed it with --manual instead\n",
    );
  });
});
