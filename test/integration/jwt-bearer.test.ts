import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../src/grants/grant.js';
import { runCli } from '../support/cli.js';
import { type Engine, removeDir, startEngine, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type JwtBearerServer, startJwtBearerServer } from '../support/jwt-bearer-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets, readDbFiles } from '../support/secret-scan.js';
import { generateSigningKey, writeTempFiles } from '../support/signing-keys.js';

const SERVICE_ACCOUNT = 'gk-robot@gk-project.iam.gserviceaccount.com';
const KEY_ID = '0123456789abcdef0123456789abcdef01234567';
const SCOPE = 'https://www.googleapis.com/auth/admin.directory.user.readonly';
const key = generateSigningKey('rsa', KEY_ID);

/** A service-account JSON key file, as Google's console downloads it. */
function serviceAccountKeyFile(tokenUri: string, privateKeyPem = key.pem): string {
  return JSON.stringify({
    type: 'service_account',
    project_id: 'gk-project',
    private_key_id: KEY_ID,
    private_key: privateKeyPem,
    client_email: SERVICE_ACCOUNT,
    client_id: '100000000000000000001',
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: tokenUri,
  });
}

describe('JWT-bearer grants (a Google service account with domain-wide delegation)', () => {
  let redis: PrivateRedis;
  let server: JwtBearerServer;
  let engine: Engine;
  let dataDir: string;
  let env: Record<string, string>;
  let files: ReturnType<typeof writeTempFiles>;

  beforeAll(async () => {
    [redis, server] = await Promise.all([
      startPrivateRedis(),
      startJwtBearerServer({
        issuer: SERVICE_ACCOUNT,
        keys: { [KEY_ID]: key.publicJwk },
        accessTokenTtlSec: 3,
      }),
    ]);
    dataDir = tempDataDir();
    const sealingKey = testKey();
    env = { GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: sealingKey };
    files = writeTempFiles({ 'sa.json': serviceAccountKeyFile(server.tokenEndpoint) });
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: sealingKey });
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), server?.close()]);
    files?.remove();
    if (dataDir) removeDir(dataDir);
  });

  it('registers the key file, then keeps a delegated grant fresh for five tokens, a new assertion each', async () => {
    const added = await runCli(
      [
        'client',
        'add',
        'google-sa',
        '--provider',
        'google-service-account',
        '--key-file',
        files.path('sa.json'),
      ],
      env,
    );
    expect(added).toMatchObject({ code: 0, stderr: '' });
    const shownClient = await runCli(['client', 'show', 'google-sa', '--json'], env);
    expect(JSON.parse(shownClient.stdout)).toMatchObject({
      client_id: SERVICE_ACCOUNT,
      provider: 'google',
      token_endpoint: server.tokenEndpoint,
      has_secret: false,
      public: false,
      signing_key: { alg: 'RS256', key_id: KEY_ID, audience: 'token_endpoint' },
    });
    const grantAdd = await runCli(
      [
        'grant',
        'add',
        'google-sa',
        '--jwt-bearer',
        '--subject',
        'admin@example.com',
        '--scopes',
        SCOPE,
        '--label',
        'directory',
        '--json',
      ],
      env,
    );
    expect(grantAdd.stderr).toBe('');
    expect(JSON.parse(grantAdd.stdout)).toMatchObject({ kind: 'jwt_bearer', replaced: false });

    const grants = engine.service.app.grants;
    let last: Grant = (await grants.find('directory'))!.grant;
    expect(last).toMatchObject({ kind: 'jwt_bearer', subject: 'admin@example.com' });
    const seen = new Set([key.pem]);
    while (last.version < 5) {
      const stored = await waitFor(
        async () => {
          const g = await grants.find('directory');
          return g && g.grant.version > last.version ? g : undefined;
        },
        `version ${last.version + 1}`,
        10_000,
        20,
      );
      seen.add(stored.tokens.accessToken());
      expect(server.isValid(stored.tokens.accessToken())).toBe(true);
      last = stored.grant;
    }
    expect(last.state).toBe('active');
    expect(server.refused).toEqual({});
    // One accepted assertion per token: the first and one per version since, each its own jti.
    expect(server.accepted).toHaveLength(last.version + 1);
    expect(new Set(server.accepted.map((a) => a.claims.jti)).size).toBe(server.accepted.length);
    for (const { claims, form } of server.accepted) {
      // Google's shape: the scope in the assertion, sub the delegated user, nothing else in the form.
      expect(claims).toMatchObject({
        iss: SERVICE_ACCOUNT,
        sub: 'admin@example.com',
        scope: SCOPE,
        aud: server.tokenEndpoint,
      });
      expect(claims.exp! - claims.iat!).toBe(60);
      expect(Object.keys(form).sort()).toEqual(['assertion', 'grant_type']);
    }
    const shown = await runCli(['grant', 'show', 'directory'], env);
    expect(shown.stdout).toMatch(
      /next token from:\s+a new assertion signed with the client's key, for admin@example.com/,
    );
    expect(leakedSecrets(engine.logs.join(''), seen)).toEqual([]);
    expect(leakedSecrets(readDbFiles(engine.service.app.database!.path), seen)).toEqual([]);
  });
});
