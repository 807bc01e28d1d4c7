import { afterAll, describe, expect, it } from 'vitest';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { expectOneClearLine, runCli } from '../support/cli.js';
import { removeDir, tempDataDir, testKey } from '../support/engine.js';

describe('grantkeeper client secret: expiry, rotate, retire', { timeout: 120_000 }, () => {
  const dir = tempDataDir();
  const env = {
    GRANTKEEPER_DATA_DIR: dir,
    GRANTKEEPER_KEY: testKey(),
    FIRST_SECRET: 'first-secret-value',
    NEXT_SECRET: 'next-secret-value',
  };
  const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;
  const add = ['client', 'add', 'contoso', '--provider', 'microsoft', '--tenant', 'contoso.onmicrosoft.com'];
  const clientId = ['--client-id', '0b4e7f1c-2d3a-4b5c-8d9e-0f1a2b3c4d5e'];

  afterAll(() => removeDir(dir));

  it('adds a client with a secret end date, and refuses one that is not a date', async () => {
    const added = await runCli(
      [
        ...add,
        ...clientId,
        '--client-secret-env',
        'FIRST_SECRET',
        '--secret-expires',
        '2027-06-30',
        '--json',
      ],
      env,
    );
    expect(added.code).toBe(0);
    expect(json(added.stdout)).toMatchObject({
      secret_expires_at: '2027-06-30T00:00:00.000Z',
      previous_secret: null,
      secret_in_use: null,
    });
    expect(added.stdout + added.stderr).not.toContain(env.FIRST_SECRET);
    const bad = await runCli(
      [...add, ...clientId, '--client-secret-env', 'FIRST_SECRET', '--secret-expires', 'soon'],
      env,
    );
    // Commander's usage error, as for every malformed flag: exit 2, the flag named, nothing stored.
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /--secret-expires <date>' argument 'soon' is invalid\. expected a date such as 2027-06-30/,
    );
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('rotates with the old secret kept, refuses a second rotation until it is retired, then retires once', async () => {
    const rotated = await runCli(
      [
        'client',
        'secret',
        'rotate',
        'contoso',
        '--client-secret-env',
        'NEXT_SECRET',
        '--secret-expires',
        '2028-06-30',
        '--json',
      ],
      env,
    );
    expect(rotated.code).toBe(0);
    expect(json(rotated.stdout)).toMatchObject({
      secret_expires_at: '2028-06-30T00:00:00.000Z',
      previous_secret: { expires_at: '2027-06-30T00:00:00.000Z' },
    });
    const again = await runCli(
      ['client', 'secret', 'rotate', 'contoso', '--client-secret-env', 'FIRST_SECRET'],
      env,
    );
    expectOneClearLine(again, /still keeps a previous secret.*client secret retire contoso/);
    const shown = await runCli(['client', 'show', 'contoso'], env);
    expect(shown.stdout).toMatch(/ends 2028-06-30; previous kept as fallback \(ends 2027-06-30\)/);
    const retired = await runCli(['client', 'secret', 'retire', 'contoso', '--json'], env);
    expect(retired.code).toBe(0);
    expect(json(retired.stdout)).toMatchObject({
      previous_secret: null,
      secret_expires_at: '2028-06-30T00:00:00.000Z',
    });
    expectOneClearLine(
      await runCli(['client', 'secret', 'retire', 'contoso'], env),
      /keeps no previous secret/,
    );
  });

  it('status lists the secret that ends within 30 days', async () => {
    const soon = new Date(Date.now() + 10 * 86_400_000).toISOString();
    const added = await runCli(
      [
        'client',
        'add',
        'soon',
        '--provider',
        'x',
        '--client-id',
        'soon-id',
        '--client-secret-env',
        'FIRST_SECRET',
        '--secret-expires',
        soon,
      ],
      env,
    );
    expect(added.code).toBe(0);
    const status = await runCli(['status', '--json'], env);
    const ahead = (json(status.stdout).ahead as Array<Record<string, unknown>>).map((a) => [a.kind, a.name]);
    expect(ahead).toEqual([['client_secret', 'soon']]);
    const human = await runCli(['status'], env);
    expect(human.stdout).toMatch(/ahead \(30 d\):\s+1: client soon secret in (9d|10d)/);
  });

  it('refuses to retire the old secret while the provider last accepted only it, unless --force', async () => {
    const rotated = await runCli(
      ['client', 'secret', 'rotate', 'contoso', '--client-secret-env', 'FIRST_SECRET'],
      env,
    );
    expect(rotated.code).toBe(0);
    // As a refresh that fell back would record it (test/integration/secret-rotation.test.ts).
    const raw = Buffer.from(env.GRANTKEEPER_KEY, 'base64');
    const store = openSqliteStore({
      dataDir: dir,
      sealer: new Sealer(new Keyring({ id: keyIdFor(raw), key: raw })),
    });
    try {
      const client = (await store.clients.findByName('contoso'))!;
      await store.clients.recordSecretInUse(client.id, 'previous', Date.now());
    } finally {
      await store.admin.close();
    }
    const refused = await runCli(['client', 'secret', 'retire', 'contoso'], env);
    expectOneClearLine(refused, /last accepted the previous secret of contoso.*pass --force/);
    const forced = await runCli(['client', 'secret', 'retire', 'contoso', '--force', '--json'], env);
    expect(forced.code).toBe(0);
    expect(json(forced.stdout)).toMatchObject({ previous_secret: null, secret_in_use: null });
  });
});
