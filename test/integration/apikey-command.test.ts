import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ApiKeyAuthenticator } from '../../src/api/auth/api-key-authenticator.js';
import { registerApiKeyCommands } from '../../src/cli/commands/apikey.js';
import { configSchema } from '../../src/config/config-schema.js';
import { createLogger } from '../../src/log/logger.js';
import { openStoreContext, type StoreContext } from '../../src/service/store-context.js';
import { runCli } from '../support/cli.js';
import { removeDir, tempDataDir, testKey } from '../support/engine.js';
import { readDbFiles } from '../support/secret-scan.js';

/** The apikey commands on a program of their own, as main.ts will register them. */
async function cli(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const program = new Command('grantkeeper').option('--config <path>').exitOverride();
  registerApiKeyCommands(program);
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'grantkeeper', ...args]);
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
  return { stdout, stderr };
}

describe('grantkeeper apikey', () => {
  let dataDir: string;
  let sealingKey: string;
  let app: StoreContext;
  let grantId: string;

  beforeAll(async () => {
    dataDir = tempDataDir();
    const key = testKey();
    sealingKey = key;
    vi.stubEnv('GRANTKEEPER_DATA_DIR', dataDir);
    vi.stubEnv('GRANTKEEPER_KEY', key);
    app = await openStoreContext(
      { config: configSchema.parse({ dataDir }), secrets: { key } },
      createLogger({ level: 'silent' }),
    );
    const client = await app.clients.upsert({
      name: 'c',
      profile: {
        kind: 'oidc',
        authorizationEndpoint: 'http://127.0.0.1:1/auth',
        tokenEndpoint: 'http://127.0.0.1:1/token',
        defaultScopes: [],
        extraAuthorizeParams: {},
        confidentialAuthMethod: 'client_secret_basic',
        rotatesRefreshTokens: true,
        oldRefreshTokensStayValid: false,
        defaultAccessLifetimeSec: 3600,
        refreshIdleLimitSec: 86_400,
        keepAliveIntervalSec: 3600,
      },
      clientId: 'c',
      authMethod: 'none',
      scopes: [],
      now: Date.now(),
    });
    const now = Date.now();
    grantId = (
      await app.grants.saveConsent({
        clientRef: client.id,
        label: '@bot',
        accessToken: 'at',
        refreshToken: 'rt',
        accessExpiresAt: now + 3600_000,
        accessLifetimeMs: 3600_000,
        refreshTokenUsedAt: now,
        nextRefreshAt: now + 3000_000,
        now,
      })
    ).id;
  });

  afterAll(async () => {
    await app?.close();
    vi.unstubAllEnvs();
    if (dataDir) removeDir(dataDir);
  });

  it('creates a key shown once, stored only as a hash, scoped by label to grant ids', async () => {
    const { stdout, stderr } = await cli('apikey', 'create', 'poster', '--grants', '@bot');
    const key = stdout.trim();
    expect(key).toMatch(/^gk_[A-Za-z0-9_-]{43}$/);
    expect(stderr).toMatch(/shown only this once/);
    expect(readDbFiles(app.database!.path)).not.toContain(key);
    const row = await app.apiKeys.findByName('poster');
    expect(row?.grantIds).toEqual([grantId]);

    const auth = new ApiKeyAuthenticator(app.apiKeys, createLogger({ level: 'silent' }));
    await auth.load();
    expect(await auth.authenticate(key)).toMatchObject({ role: 'reader', grantIds: new Set([grantId]) });
    expect(await auth.authenticate(`${key.slice(0, -1)}x`)).toBeUndefined();
    await auth.stop();
    expect((await app.apiKeys.findByName('poster'))?.lastUsedAt).toBeGreaterThan(0);

    const listed = await cli('apikey', 'list');
    expect(listed.stdout).toMatch(/poster\s+reader\s+@bot\s/);
    expect(listed.stdout).not.toContain(key);
  });

  it('creates an admin key only when asked with --admin, and lists roles readably and as JSON', async () => {
    const { stdout, stderr } = await cli('apikey', 'create', 'ops', '--admin');
    const key = stdout.trim();
    expect(stderr).toMatch(/an admin key/);
    expect(await app.apiKeys.findByName('ops')).toMatchObject({ role: 'admin', grantIds: null });
    const auth = new ApiKeyAuthenticator(app.apiKeys, createLogger({ level: 'silent' }));
    await auth.load();
    expect(await auth.authenticate(key)).toMatchObject({ role: 'admin', grantIds: null });
    await auth.stop();

    const table = (await cli('apikey', 'list')).stdout;
    expect(table.split('\n')[0]).toMatch(/^name\s+role\s+grants\s+created\s+last used$/);
    expect(table).toMatch(/ops\s+admin\s+all\s/);
    const json = JSON.parse((await cli('apikey', 'list', '--json')).stdout) as Array<Record<string, unknown>>;
    expect(json).toEqual([
      expect.objectContaining({ name: 'ops', role: 'admin', grants: null, last_used_at: expect.any(String) }),
      expect.objectContaining({ name: 'poster', role: 'reader', grants: [{ id: grantId, label: '@bot' }] }),
    ]);
    expect(JSON.stringify(json)).not.toContain('gk_');
    await cli('apikey', 'revoke', 'ops');
  });

  it('refuses a key without a role, or with both, as a usage error (exit 2) that creates nothing', async () => {
    const env = {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: sealingKey,
      GRANTKEEPER_LOG_LEVEL: 'silent',
    };
    const neither = await runCli(['apikey', 'create', 'lazy'], env);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/--admin .*or .*--grants/);
    expect(neither.stdout).toBe('');
    const both = await runCli(['apikey', 'create', 'greedy', '--admin', '--grants', '@bot'], env);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/cannot be used with/);
    expect(both.stdout).toBe('');
    const keys = app.apiKeys;
    expect([await keys.findByName('lazy'), await keys.findByName('greedy')]).toEqual([undefined, undefined]);
  }, 60_000);

  it('refuses unknown grants and duplicate names, and revokes', async () => {
    await expect(cli('apikey', 'create', 'x', '--grants', '@nobody')).rejects.toThrow(
      /no grant has the id or label/,
    );
    await expect(cli('apikey', 'create', 'poster', '--admin')).rejects.toThrow(/already exists/);
    await expect(cli('apikey', 'create', 'bad name!', '--admin')).rejects.toThrow(/NAME/);
    await expect(cli('apikey', 'create', 'x', '--grants', ' , ')).rejects.toThrow(/at least one grant/);
    await cli('apikey', 'revoke', 'poster');
    expect(await app.apiKeys.findByName('poster')).toBeUndefined();
    await expect(cli('apikey', 'revoke', 'poster')).rejects.toThrow(/no API key/);
  });
});
