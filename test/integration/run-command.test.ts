import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/config-schema.js';
import { createLogger } from '../../src/log/logger.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { openStoreContext } from '../../src/service/store-context.js';
import { spawnCli } from '../support/cli.js';
import { removeDir, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';

const SECRET = 'run-command-client-secret';

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('grantkeeper run as a process', () => {
  let endpoint: FaultEndpoint;
  let dataDir: string;

  beforeAll(async () => {
    endpoint = await startFaultEndpoint();
    dataDir = tempDataDir();
  });

  afterAll(async () => {
    await endpoint?.close();
    if (dataDir) removeDir(dataDir);
  });

  it('starts its own redis-server, refreshes, and on SIGTERM commits the refresh in flight before exiting', async () => {
    const key = testKey();
    const endpoints = { authorization: endpoint.url.replace(/token$/, 'auth'), token: endpoint.url };
    const configPath = join(dataDir, 'grantkeeper.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        clients: [
          { name: 'fault', provider: 'oidc', endpoints, clientId: 'gk', clientSecretEnv: 'FAULT_SECRET' },
        ],
      }),
    );
    // Seed a grant that is due now, through the same code the service uses.
    const loaded = { config: configSchema.parse({ dataDir }), secrets: { key } };
    const app = await openStoreContext(loaded, createLogger({ level: 'silent' }));
    const client = await app.clients.upsert({
      name: 'fault',
      profile: await resolveProvider({ kind: 'oidc', endpoints }),
      clientId: 'gk',
      clientSecret: SECRET,
      authMethod: 'client_secret_basic',
      scopes: ['openid'],
      now: Date.now(),
    });
    const minted = endpoint.mintGrant();
    const grant = await app.grants.saveConsent({
      clientRef: client.id,
      label: '@bot',
      ...minted,
      accessExpiresAt: Date.now() + 1000,
      accessLifetimeMs: 3600_000,
      refreshTokenUsedAt: Date.now(),
      nextRefreshAt: Date.now(),
      now: Date.now(),
    });
    await app.close();

    // A slow provider: the refresh is in flight when SIGTERM arrives.
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: 1500 });
    const cli = spawnCli(['run', '--config', configPath], {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: key,
      FAULT_SECRET: SECRET,
      GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '5',
      // `run` also serves the API: an ephemeral port keeps parallel test files apart.
      GRANTKEEPER_API_PORT: '0',
    });
    await waitFor(
      () => endpoint.requests.some((r) => r.form.refresh_token === minted.refreshToken),
      'the refresh request',
    ).catch((err: Error) => {
      cli.child.kill('SIGKILL');
      throw new Error(`${err.message}\nstdout: ${cli.stdout()}\nstderr: ${cli.stderr()}`);
    });
    const redisPid = Number(/"redisPid":(\d+)[^\n]*started a managed redis-server/.exec(cli.stdout())?.[1]);
    expect(redisPid).toBeGreaterThan(0);
    cli.child.kill('SIGTERM');
    const result = await cli.exited;

    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('grant refreshed');
    expect(result.stdout).toContain('"msg":"stopped"');
    expect(result.stdout).not.toContain(minted.refreshToken);
    expect(result.stdout).not.toContain(SECRET);
    expect(isRunning(redisPid)).toBe(false);

    const after = await openStoreContext(loaded, createLogger({ level: 'silent' }));
    try {
      const row = await after.grants.get(grant.id);
      expect(row?.grant).toMatchObject({ version: 1, state: 'active', leaseOwner: null });
      expect(endpoint.isAccessTokenValid(row!.tokens.accessToken())).toBe(true);
    } finally {
      await after.close();
    }
  });
});
