import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addServiceGrant } from '../../src/grants/actions/add-service-grant.js';
import type { Grant } from '../../src/grants/grant.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { TokenClient } from '../../src/oauth/token-client.js';
import { requestServiceToken } from '../../src/refresh/next-token.js';
import { runCli } from '../support/cli.js';
import {
  addClient,
  type Engine,
  removeDir,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { collectRedisText, leakedSecrets } from '../support/secret-scan.js';
import { generateSigningKey, writeTempFiles } from '../support/signing-keys.js';

const TOKEN_TTL_SEC = 3;
const secret = `gk-cc-secret-${randomBytes(12).toString('hex')}`;
const firstKey = generateSigningKey('rsa', 'cc-key-1');
const nextKey = generateSigningKey('ec', 'cc-key-2');

describe('client-credentials grants against oidc-provider', () => {
  let redis: PrivateRedis;
  let oidc: OidcServer;
  let engines: Engine[];
  let dataDir: string;
  let key: string;

  beforeAll(async () => {
    [redis, oidc] = await Promise.all([
      startPrivateRedis(),
      startOidcServer({
        accessTokenTtlSec: TOKEN_TTL_SEC,
        clientCredentials: true,
        clients: [
          {
            clientId: 'gk-cc-secret',
            clientSecret: secret,
            redirectUris: [],
            grantTypes: ['client_credentials'],
          },
          {
            clientId: 'gk-cc-key',
            redirectUris: [],
            grantTypes: ['client_credentials'],
            authMethod: 'private_key_jwt',
            // Both certificates uploaded, as during a rotation.
            jwks: { keys: [firstKey.publicJwk, nextKey.publicJwk] },
          },
        ],
      }),
    ]);
    dataDir = tempDataDir();
    key = testKey();
    // Two workers on one store and one Redis.
    engines = [
      await startEngine({ redisUrl: redis.url, dataDir, key }),
      await startEngine({ redisUrl: redis.url, dataDir, key }),
    ];
  });

  afterAll(async () => {
    await Promise.all((engines ?? []).map((e) => e.stop()));
    await Promise.all([redis?.stop(), oidc?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  const app = () => engines[0]!.service.app;
  const addGrant = (clientRef: string, label: string) =>
    addServiceGrant(
      {
        grants: app().grants,
        clients: app().clients,
        scheduler: engines[0]!.service.engine.scheduler,
        tokenClient: engines[0]!.service.engine.tokenClient,
        timing: engines[0]!.service.engine.refresher.timing,
      },
      { clientRef, kind: 'client_credentials', label, request: {} },
    );

  /** Follows a grant through `count` new tokens, each live at introspection while fresh. */
  async function followTokens(start: Grant, count: number, seen: Set<string>): Promise<Grant> {
    let last = start;
    for (let i = 0; i < count; i++) {
      const stored = await waitFor(
        async () => {
          const g = await app().grants.get(start.id);
          return g && g.grant.version > last.version ? g : undefined;
        },
        `version ${last.version + 1}`,
        10_000,
        20,
      );
      const token = stored.tokens.accessToken();
      seen.add(token);
      expect(await oidc.introspect(token)).toMatchObject({
        active: true,
        client_id: start.label.split('.')[0],
      });
      last = stored.grant;
    }
    return last;
  }

  it('keeps a secret-authenticated grant fresh for five tokens, one request per expiry under two workers and a burst of reads', async () => {
    const profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const client = await addClient(engines[0]!, profile, {
      clientId: 'gk-cc-secret',
      clientSecret: secret,
      name: 'cc-secret',
    });
    const before = oidc.counters.clientCredentials;
    const { grant } = await addGrant(client.id, 'gk-cc-secret.app');
    expect(grant).toMatchObject({ kind: 'client_credentials', mode: 'eager', state: 'active', version: 0 });
    expect((await app().grants.get(grant.id))?.tokens.refreshToken()).toBe('');

    // Readers on both workers ask all along, wanting a token valid a second more: near each expiry
    // they race the worker's scheduled request for the same version.
    let reading = true;
    const reads: Array<Promise<unknown>> = [];
    const readers = engines.map(async (engine) => {
      while (reading) {
        const burst = Array.from({ length: 10 }, () =>
          engine.service.engine.reader.read(grant.id, { minValidSec: 1 }).catch((err: unknown) => err),
        );
        reads.push(...burst);
        await Promise.all(burst);
        await new Promise((r) => setTimeout(r, 50));
      }
    });
    const seen = new Set([secret]);
    const last = await followTokens(grant, 5, seen);
    reading = false;
    await Promise.all(readers);
    const answers = await Promise.all(reads);
    expect(answers.filter((a) => a instanceof Error)).toEqual([]);

    const final = (await app().grants.get(grant.id))!.grant;
    expect(final.state).toBe('active');
    expect(last.version).toBeGreaterThanOrEqual(5);
    // One token request per version: the first, then one for each expiry, however many asked.
    expect(oidc.counters.clientCredentials - before).toBe(final.version + 1);
    expect(oidc.counters.errors).toEqual({});
    const events = await app().grants.recentEvents(grant.id, 100);
    expect(events.every((e) => e.outcome === 'refreshed' && e.rotated === false)).toBe(true);
    for (const engine of engines) expect(leakedSecrets(engine.logs.join(''), seen)).toEqual([]);
    expect(leakedSecrets(await collectRedisText(redis.url), seen)).toEqual([]);
  });

  it('keeps a private_key_jwt grant fresh, and alive across client add with a new key (the CLI)', async () => {
    const files = writeTempFiles({ 'first.pem': firstKey.pem, 'next.pem': nextKey.pem });
    const env = { GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: key };
    const register = (file: string, kid: string) =>
      runCli(
        [
          'client',
          'add',
          'cc-key',
          '--provider',
          'oidc',
          '--issuer',
          oidc.issuer,
          '--client-id',
          'gk-cc-key',
          '--private-key-file',
          files.path(file),
          '--key-id',
          kid,
        ],
        env,
      );
    try {
      expect(await register('first.pem', 'cc-key-1')).toMatchObject({ code: 0, stderr: '' });
      const added = await runCli(
        ['grant', 'add', 'cc-key', '--client-credentials', '--label', 'gk-cc-key.app', '--json'],
        env,
      );
      expect(added.stderr).toBe('');
      expect(JSON.parse(added.stdout)).toMatchObject({ kind: 'client_credentials', replaced: false });
      const grant = (await app().grants.find('gk-cc-key.app'))!.grant;
      const seen = new Set([firstKey.pem, nextKey.pem]);
      const middle = await followTokens(grant, 2, seen);

      expect(await register('next.pem', 'cc-key-2')).toMatchObject({ code: 0, stderr: '' });
      const client = (await app().clients.findByName('cc-key'))!;
      expect(client.signingKey).toMatchObject({ alg: 'ES256', keyId: 'cc-key-2' });
      const last = await followTokens(middle, 3, seen);
      expect(last.state).toBe('active');
      expect(oidc.counters.errors).toEqual({});

      const listed = await runCli(['grants'], env);
      expect(listed.stdout).toMatch(/gk-cc-key.app\s+oidc\s+client_credentials\s+active/);
      const shown = await runCli(['grant', 'show', 'gk-cc-key.app'], env);
      expect(shown.stdout).toMatch(/next token from:\s+a new client-credentials request of the client/);
      for (const engine of engines) expect(leakedSecrets(engine.logs.join(''), seen)).toEqual([]);
    } finally {
      files.remove();
    }
  });
});

describe('client-credentials requests on the wire', () => {
  let endpoint: FaultEndpoint;
  let tokenClient: TokenClient;

  beforeAll(async () => {
    endpoint = await startFaultEndpoint();
    tokenClient = new TokenClient({ timeoutMs: 5000 });
  });

  afterAll(async () => {
    await tokenClient?.close();
    await endpoint?.close();
  });

  it("sends scope, each resource and audience, to the preset's service endpoint, and drops a refresh token", async () => {
    const serviceEndpoint = endpoint.url.replace(/\/token$/, '/service/token');
    endpoint.push({
      type: 'status',
      status: 200,
      json: { access_token: 'at-1', token_type: 'bearer', expires_in: 60, refresh_token: 'rt-unwanted' },
    });
    const client = {
      id: 'c_1',
      name: 'x-app',
      profile: testProfile(endpoint.url, { serviceTokenEndpoint: serviceEndpoint }),
      scopes: [],
      authorizeParams: {},
      secretInUse: null,
      target: {
        tokenEndpoint: endpoint.url,
        clientId: 'app',
        clientSecret: 'app-secret',
        authMethod: 'client_secret_basic' as const,
      },
    };
    const tokens = await requestServiceToken(tokenClient, client, 'client_credentials', {
      scope: 'a b',
      resource: ['https://api.example/one', 'https://api.example/two'],
      audience: 'https://api.example',
    });
    expect(tokens).toMatchObject({ accessToken: 'at-1' });
    expect(tokens.refreshToken).toBeUndefined();
    const sent = endpoint.requests.at(-1)!;
    expect(sent.form).toMatchObject({
      grant_type: 'client_credentials',
      scope: 'a b',
      audience: 'https://api.example',
    });
    expect(sent.headers.authorization).toBe(`Basic ${Buffer.from('app:app-secret').toString('base64')}`);
    expect(sent.path).toBe('/service/token');
    expect(sent.params.getAll('resource')).toEqual(['https://api.example/one', 'https://api.example/two']);
  });
});
