import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addServiceGrant } from '../../src/grants/actions/add-service-grant.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { expectOneClearLine, runCli } from '../support/cli.js';
import {
  addClient,
  type Engine,
  removeDir,
  startEngine,
  tempDataDir,
  testKey,
  waitFor,
} from '../support/engine.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { generateSigningKey, selfSignedCertificate, writeTempFiles } from '../support/signing-keys.js';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const rsa = generateSigningKey('rsa', 'registered');
const ec = generateSigningKey('ec');

describe('client add with a bad key: one clear line, exit 2, nothing stored', () => {
  let dataDir: string;
  let env: Record<string, string>;
  let files: ReturnType<typeof writeTempFiles>;

  beforeAll(() => {
    dataDir = tempDataDir();
    env = { GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: randomBytes(32).toString('base64') };
    files = writeTempFiles({
      'rsa.pem': rsa.pem,
      'ec.pem': ec.pem,
      'not-a-key.pem': '{"type":"service_account"}',
      'public.pem': rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
      'other.crt': selfSignedCertificate(generateSigningKey('rsa').pem),
      'not-json.json': rsa.pem,
      'half.json': JSON.stringify({
        type: 'service_account',
        client_email: 'not-an-email',
        private_key: rsa.pem,
      }),
      'bad-key.json': JSON.stringify({
        type: 'service_account',
        client_email: 'sa@p.iam.gserviceaccount.com',
        private_key: 'MIIEvQ',
        private_key_id: 'k1',
        token_uri: 'https://oauth2.googleapis.com/token',
      }),
      'http.json': JSON.stringify({
        type: 'service_account',
        client_email: 'sa@p.iam.gserviceaccount.com',
        private_key: rsa.pem,
        private_key_id: 'k1',
        token_uri: 'http://oauth2.example/token',
      }),
    });
  });

  afterAll(() => {
    files?.remove();
    if (dataDir) removeDir(dataDir);
  });

  const oidcClient = (...flags: string[]) =>
    runCli(['client', 'add', 'bad', '--provider', 'x', '--client-id', 'abc', ...flags], env);
  const serviceAccount = (file: string) =>
    runCli(
      ['client', 'add', 'bad', '--provider', 'google-service-account', '--key-file', files.path(file)],
      env,
    );

  const cases: Array<[string, () => ReturnType<typeof runCli>, RegExp]> = [
    [
      'an unreadable key file',
      () => oidcClient('--private-key-file', '/nonexistent/key.pem'),
      /cannot read the private key file \/nonexistent\/key.pem \(ENOENT\)/,
    ],
    [
      'a key file that is not PEM',
      () => oidcClient('--private-key-file', files.path('not-a-key.pem')),
      /not-a-key.pem is not a PEM private key/,
    ],
    [
      'a public key for a private one',
      () => oidcClient('--private-key-file', files.path('public.pem')),
      /public.pem is not a PEM private key/,
    ],
    [
      'an unsupported --alg',
      () => oidcClient('--private-key-file', files.path('rsa.pem'), '--alg', 'HS256'),
      /--alg "HS256" is not supported: expected RS256, PS256, ES256/,
    ],
    [
      'an --alg that does not match the key',
      () => oidcClient('--private-key-file', files.path('ec.pem'), '--alg', 'RS256'),
      /--alg RS256 does not match .*ec.pem, a P-256 key/,
    ],
    [
      'a certificate of another key',
      () =>
        oidcClient('--private-key-file', files.path('rsa.pem'), '--x5t-from-cert', files.path('other.crt')),
      /other.crt certifies another key than the private key given/,
    ],
    ['a key flag without a key', () => oidcClient('--alg', 'RS256'), /--alg goes with --private-key-file/],
    [
      'an unreadable service-account file',
      () => serviceAccount('missing.json'),
      /cannot read the key file .*missing.json \(ENOENT\)/,
    ],
    [
      'a PEM for a service-account file',
      () => serviceAccount('not-json.json'),
      /not-json.json is not a service-account JSON key file \(not JSON\)/,
    ],
    [
      'a service-account file missing fields',
      () => serviceAccount('half.json'),
      /half.json is not a service-account JSON key file \(check client_email, private_key_id, token_uri\)/,
    ],
    [
      'a service-account file with a broken key',
      () => serviceAccount('bad-key.json'),
      /the private_key of .*bad-key.json is not a PEM private key/,
    ],
    [
      'a service-account token_uri over plain http',
      () => serviceAccount('http.json'),
      /token_uri of .*http.json http:\/\/oauth2.example must use https/,
    ],
  ];

  it.each(cases)('refuses %s', async (_what, run, pattern) => {
    const result = await run();
    expectOneClearLine(result, pattern);
    expect(result.code).toBe(2);
    // Never a line of the key itself.
    expect(result.stderr).not.toContain(rsa.pem.split('\n')[1]);
  });

  it('stored nothing for any of them', async () => {
    expect(
      await runCli(
        [
          'client',
          'add',
          'good',
          '--provider',
          'x',
          '--client-id',
          'abc',
          '--private-key-file',
          files.path('rsa.pem'),
        ],
        env,
      ),
    ).toMatchObject({ code: 0 });
    const listed = await runCli(['client', 'list', '--json'], env);
    expect((JSON.parse(listed.stdout) as Array<{ name: string }>).map((c) => c.name)).toEqual(['good']);
  });
});

describe('a private key the server does not know', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let receiver: WebhookReceiver;
  let engine: Engine;
  let dataDir: string;

  beforeAll(async () => {
    [redis, oidc, receiver] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: 3,
        clientCredentials: true,
        clients: [
          {
            clientId: 'gk-keyed',
            redirectUris: [],
            grantTypes: ['client_credentials'],
            authMethod: 'private_key_jwt',
            jwks: { keys: [rsa.publicJwk] },
          },
        ],
      }),
      startWebhookReceiver(),
    ]);
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: testKey(),
      config: { webhookUrls: [receiver.url] },
      api: { webhookSecret: 'w'.repeat(32), alertRetry: { attempts: 2, baseDelayMs: 100 } },
    });
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), oidc?.close(), receiver?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  it('is refused as invalid_client: grant add stores nothing; a live grant becomes client_error with one client alert', async () => {
    const app = engine.service.app;
    const profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const register = (pem: string, kid: string) =>
      addClient(engine, profile, {
        clientId: 'gk-keyed',
        name: 'keyed',
        privateKey: { pem, alg: pem === ec.pem ? 'ES256' : 'RS256', keyId: kid, audience: 'token_endpoint' },
      });
    const ctx = {
      grants: app.grants,
      clients: app.clients,
      scheduler: engine.service.engine.scheduler,
      tokenClient: engine.service.engine.tokenClient,
      timing: engine.service.engine.refresher.timing,
    };
    const add = (clientRef: string, label: string) =>
      addServiceGrant(ctx, { clientRef, kind: 'client_credentials', label, request: {} });

    const wrong = await register(ec.pem, 'unknown');
    await expect(add(wrong.id, 'never')).rejects.toThrow(
      /first token request failed, nothing was stored: token endpoint error invalid_client/,
    );
    expect(await app.grants.find('never')).toBeUndefined();

    const right = await register(rsa.pem, 'registered');
    const { grant } = await add(right.id, 'keyed-app');
    // The key is swapped for one the server never saw: the next request is refused.
    await register(ec.pem, 'unknown');
    const stopped = await waitFor(async () => {
      const g = (await app.grants.get(grant.id))?.grant;
      return g?.state === 'client_error' ? g : undefined;
    }, 'the grant to stop as client_error');
    expect(stopped.lastError).toMatch(/invalid_client/);
    // The refusal is the client's: one client.failing covers the grant, no grant.client_error of its own.
    const alerts = () =>
      receiver.received.filter(
        (r) =>
          r.json.grant?.id === grant.id || (r.json.client as { id?: string } | undefined)?.id === right.id,
      );
    await waitFor(() => alerts().length > 0, 'the client.failing alert', 10_000);
    await new Promise((r) => setTimeout(r, 2500));
    expect(alerts().map((a) => a.json.type)).toEqual(['client.failing']);
    expect(oidc.counters.errors.invalid_client).toBe(2);
  });
});
