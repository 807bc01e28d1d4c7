import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import { createLogger } from '../../src/log/logger.js';
import { openStoreContext, type StoreContext } from '../../src/service/store-context.js';
import { sealContext } from '../../src/store/seal-contexts.js';
import { type CliResult, runCli } from '../support/cli.js';
import { removeDir, tempDataDir, testProfile } from '../support/engine.js';
import { leakedSecrets } from '../support/secret-scan.js';

const silent = createLogger({ level: 'silent' });
const keyId = (b64: string) => keyIdFor(Buffer.from(b64, 'base64'));
const secret = (what: string) => `${what}-${randomBytes(12).toString('hex')}`;

describe('grantkeeper rekey', () => {
  const oldKey = randomBytes(32).toString('base64');
  const newKey = randomBytes(32).toString('base64');
  const strayKey = randomBytes(32).toString('base64');
  const secrets: string[] = [oldKey, newKey, strayKey];
  const outputs: CliResult[] = [];
  let dataDir: string;
  const grantIds: string[] = [];

  const open = (env: Record<string, string>): Promise<StoreContext> =>
    openStoreContext(loadConfig({ GRANTKEEPER_DATA_DIR: dataDir, ...env }), silent);
  const cli = async (args: string[], env: Record<string, string>) => {
    const result = await runCli(args, { GRANTKEEPER_DATA_DIR: dataDir, ...env });
    outputs.push(result);
    return result;
  };
  /** Every sealed column, to prove a refused run changed nothing. */
  const sealedSnapshot = async () => {
    const app = await open({ GRANTKEEPER_KEY: newKey, GRANTKEEPER_PREVIOUS_KEYS: oldKey });
    try {
      return app
        .database!.sqlite.prepare(
          `select 'g' as t, id, access_token_sealed || '|' || refresh_token_sealed as v from grants
           union all select 'c', id, client_secret_sealed from clients
           union all select 'm', key, value from meta order by 1, 2`,
        )
        .all();
    } finally {
      await app.close();
    }
  };

  beforeAll(async () => {
    dataDir = tempDataDir();
    const app = await open({ GRANTKEEPER_KEY: oldKey });
    try {
      const profile = testProfile('https://id.example.test/token');
      const withSecret = await app.clients.upsert({
        name: 'confidential',
        profile,
        clientId: 'c1',
        clientSecret: secret('client-secret'),
        authMethod: 'client_secret_basic',
        scopes: profile.defaultScopes,
        now: Date.now(),
      });
      await app.clients.upsert({
        name: 'public',
        profile,
        clientId: 'c2',
        authMethod: 'none',
        scopes: profile.defaultScopes,
        now: Date.now(),
      });
      secrets.push((await app.clients.openById(withSecret.id))!.target.clientSecret as string);
      for (let i = 0; i < 5; i++) {
        const tokens = { accessToken: secret('access'), refreshToken: secret('refresh') };
        secrets.push(tokens.accessToken, tokens.refreshToken);
        const now = Date.now();
        grantIds.push(
          (
            await app.grants.saveConsent({
              clientRef: withSecret.id,
              label: `acct-${i}`,
              ...tokens,
              accessExpiresAt: now + 3_600_000,
              accessLifetimeMs: 3_600_000,
              refreshTokenUsedAt: now,
              nextRefreshAt: now + 3_000_000,
              now,
            })
          ).id,
        );
      }
    } finally {
      await app.close();
    }
  });

  afterAll(() => {
    if (dataDir) removeDir(dataDir);
  });

  it('without the old key it cannot even open the store, and says which keys', async () => {
    const before = await sealedSnapshot();
    const r = await cli(['rekey'], { GRANTKEEPER_KEY: newKey });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`sealed with key ${keyId(oldKey)}.*${keyId(newKey)}`));
    expect(await sealedSnapshot()).toEqual(before);
  });

  it('refuses, changing nothing, while one value opens with none of the loaded keys', async () => {
    // One refresh token sealed under a key nobody supplies (a forgotten earlier rotation).
    const stray = new Sealer(new Keyring({ id: keyId(strayKey), key: Buffer.from(strayKey, 'base64') }));
    const victim = grantIds[2] as string;
    const app = await open({ GRANTKEEPER_KEY: oldKey });
    const original = app
      .database!.sqlite.prepare('select refresh_token_sealed as v from grants where id = ?')
      .get(victim) as { v: string };
    app
      .database!.sqlite.prepare('update grants set refresh_token_sealed = ? where id = ?')
      .run(stray.seal('stray-refresh', sealContext(victim, 'refresh_token')), victim);
    await app.close();

    const before = await sealedSnapshot();
    const r = await cli(['rekey', '--json'], { GRANTKEEPER_KEY: newKey, GRANTKEEPER_PREVIOUS_KEYS: oldKey });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/rekey changed nothing: 1 of 12 sealed values cannot be opened/);
    expect(r.stderr).toContain(keyId(strayKey));
    expect(r.stderr).toContain(`grant:${victim}:refresh_token`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await sealedSnapshot()).toEqual(before);

    const fix = await open({ GRANTKEEPER_KEY: oldKey });
    fix
      .database!.sqlite.prepare('update grants set refresh_token_sealed = ? where id = ?')
      .run(original.v, victim);
    await fix.close();
  });

  it('reseals every value under the new key in one run and reports the counts', async () => {
    const r = await cli(['rekey', '--json'], { GRANTKEEPER_KEY: newKey, GRANTKEEPER_PREVIOUS_KEYS: oldKey });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      keyId: keyId(newKey),
      resealed: { accessTokens: 5, refreshTokens: 5, clientSecrets: 1, clientKeys: 0, keyCheck: 1 },
      alreadyCurrent: 0,
      before: { [keyId(oldKey)]: 12 },
      total: 12,
    });
  });

  it('a second run finds nothing to do', async () => {
    const r = await cli(['rekey'], { GRANTKEEPER_KEY: newKey, GRANTKEEPER_PREVIOUS_KEYS: oldKey });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^resealed 0 of 12 values under key k[0-9a-f]{10} .*; 12 already used it\n/);
  });

  it('afterwards the new key alone opens everything', async () => {
    const app = await open({ GRANTKEEPER_KEY: newKey });
    try {
      const opened: string[] = [];
      for (const g of await app.grants.list()) {
        const { tokens } = (await app.grants.get(g.id))!;
        opened.push(tokens.accessToken(), tokens.refreshToken());
      }
      expect(opened).toHaveLength(10);
      expect(opened.every((t) => secrets.includes(t))).toBe(true);
      const client = (await app.clients.list()).find((c) => c.name === 'confidential');
      expect(secrets).toContain((await app.clients.openById(client!.id))!.target.clientSecret);
      const keyIds = app
        .database!.sqlite.prepare(
          `select access_token_sealed as v from grants union all select refresh_token_sealed from grants
           union all select client_secret_sealed from clients where client_secret_sealed is not null
           union all select value from meta where key = 'key_check'`,
        )
        .all()
        .map((row) => app.sealer.keyIdOf((row as { v: string }).v));
      expect(new Set(keyIds)).toEqual(new Set([keyId(newKey)]));
    } finally {
      await app.close();
    }
  });

  it('and the old key alone no longer starts, naming both key ids', async () => {
    await expect(open({ GRANTKEEPER_KEY: oldKey })).rejects.toThrow(
      new RegExp(`sealed with key ${keyId(newKey)}, but the loaded key is ${keyId(oldKey)}`),
    );
    const r = await cli(['status', '--json'], { GRANTKEEPER_KEY: oldKey });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`sealed with key ${keyId(newKey)}.*${keyId(oldKey)}`));
  });

  it('never printed a key, token or client secret', () => {
    const text = outputs.map((o) => o.stdout + o.stderr).join('\n');
    expect(outputs.length).toBeGreaterThanOrEqual(5);
    expect(leakedSecrets(text, secrets)).toEqual([]);
  });
});
