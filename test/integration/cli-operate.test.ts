import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findFreePort } from '../../src/redis/managed-redis.js';
import { type CliResult, runCli } from '../support/cli.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  sleep,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets } from '../support/secret-scan.js';

const SECRET = 'cli-operate-client-secret';

// Each test spawns the real CLI several times; a loaded machine needs the room.
describe('operator commands', { timeout: 90_000 }, () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let key: string;
  let clientRef: string;
  const outputs: CliResult[] = [];

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    dataDir = tempDataDir();
    key = testKey();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key });
    clientRef = (await addClient(engine, testProfile(endpoint.url), { clientId: 'gk', clientSecret: SECRET }))
      .id;
  });

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
  });

  /** Runs the CLI against the service's data and Redis; every output is kept for the secret scan. */
  async function cli(...args: string[]): Promise<CliResult> {
    const result = await runCli(args, {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: key,
      REDIS_URL: redis.url,
    });
    outputs.push(result);
    return result;
  }
  const json = (r: CliResult) => {
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout);
  };
  const requestsFor = (rt: string) => endpoint.requests.filter((r) => r.form.refresh_token === rt).length;
  /** `issuedAgoMs` back-dates the tokens: an hour-long token issued 59 minutes ago has a minute left. */
  const seed = (label: string, expiresIn: number, issuedAgoMs = 0) => {
    const minted = endpoint.mintGrant();
    const profile = testProfile(endpoint.url);
    return seedGrant(
      engine,
      clientRef,
      profile,
      { ...minted, expiresIn },
      label,
      Date.now() - issuedAgoMs,
    ).then((grant) => ({
      grant,
      minted,
    }));
  };

  it('token --min-valid refreshes once for many simultaneous callers, and the worker not again for that version', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600, latencyMs: 200 });
    const { grant, minted } = await seed('@soon', 3600, 3594_000);
    const results = await Promise.all(
      Array.from({ length: 6 }, () => cli('token', '@soon', '--min-valid', '60')),
    );
    for (const r of results) {
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^gk-test-at-[0-9a-f]+\n$/);
    }
    expect(new Set(results.map((r) => r.stdout)).size).toBe(1);
    expect(results[0]!.stdout.trim()).not.toBe(minted.accessToken);
    expect(endpoint.isAccessTokenValid(results[0]!.stdout.trim())).toBe(true);
    // Past the first plan's due time: its job must have found the version moved on.
    await sleep(Math.max(0, grant.nextRefreshAt - Date.now()) + 1500);
    expect(requestsFor(minted.refreshToken)).toBe(1);
    const v0 = (await engine.service.app.grants.recentEvents(grant.id, 20)).filter(
      (e) => e.version === grant.version,
    );
    expect(v0.map((e) => e.outcome)).toEqual(['refreshed']);
  });

  it('token without --min-valid works for a provider whose tokens live less than a minute', async () => {
    endpoint.setDefault({ type: 'rotate', expiresIn: 20 });
    const { minted } = await seed('@brief', 20);
    const bare = await cli('token', '@brief');
    expect(bare.code).toBe(0);
    expect(bare.stdout.trim()).toBe(minted.accessToken);
    // An explicit minimum no token reaches says what the provider gives, and asks it nothing.
    const tooLong = await cli('token', '@brief', '--min-valid', '60');
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toMatch(
      /valid for 60 s was asked for, but this provider's access tokens live 20 s/,
    );
    expect(requestsFor(minted.refreshToken)).toBe(0);
    // Gone before its worker refreshes would take faults the next tests push.
    expect((await cli('remove', '@brief')).code).toBe(0);
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
  });

  it('lists as JSON and tables, and refreshes on request', async () => {
    await seed('@steady', 3600);
    const [grants, show, status, failed, clients, client, table] = await Promise.all([
      cli('grants', '--json'),
      cli('grant', 'show', '@steady', '--json'),
      cli('status', '--json'),
      cli('failed', '--json'),
      cli('client', 'list', '--json'),
      cli('client', 'show', 'test-client', '--json'),
      cli('grants'),
    ]);
    expect(json(grants).map((g: { label: string }) => g.label)).toEqual(
      expect.arrayContaining(['@soon', '@steady']),
    );
    expect(json(show)).toMatchObject({
      label: '@steady',
      state: 'active',
      provider: 'oidc',
      recent_events: [],
    });
    expect(json(status)).toMatchObject({
      db: { ok: true },
      redis: { state: 'connected' },
      grants: { active: 2 },
    });
    expect(json(status).queue).toMatchObject({ delayed: expect.any(Number) });
    expect(json(failed)).toEqual([]);
    expect(json(clients)).toMatchObject([{ name: 'test-client', has_secret: true, grants: 2 }]);
    expect(json(client)).toMatchObject({ name: 'test-client', auth_method: 'client_secret_basic' });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(
      /^LABEL\s+PROVIDER\s+KIND\s+STATE\s+ACCESS EXPIRES\s+NEXT REFRESH\s+LAST REFRESH\s+FAILURES/,
    );
    expect(table.stdout).not.toContain('\u001b['); // no colours off a TTY

    const refreshed = json(await cli('refresh', '@steady', '--json'));
    expect(refreshed).toMatchObject({ label: '@steady', refreshed: true });
    expect(json(await cli('grant', 'show', '@steady', '--json')).recent_events[0]).toMatchObject({
      trigger: 'on_demand',
      outcome: 'refreshed',
    });
  });

  it('status exits 1 when the configured Redis does not answer, naming it without its password', async () => {
    const port = await findFreePort();
    const result = await runCli(['status', '--json'], {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: key,
      REDIS_URL: `redis://:not-for-print@127.0.0.1:${port}`,
    });
    outputs.push(result);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toMatchObject({
      redis: { state: 'unreachable', url: `redis://127.0.0.1:${port}` },
      grants: { needs_reconsent: 0, client_error: 0 },
    });
    expect(result.stdout).not.toContain('not-for-print');
  });

  it('reports a dead grant: refresh and status exit 1, failed lists it, retry still fails, remove drops it', async () => {
    await seed('@dead', 3600);
    endpoint.push({
      type: 'status',
      status: 400,
      json: { error: 'invalid_grant', error_description: 'revoked' },
    });
    const refresh = await cli('refresh', '@dead');
    expect(refresh.code).toBe(1);
    expect(refresh.stderr).toMatch(/^grantkeeper: grant @dead is needs_reconsent: .*grantkeeper seed\)\n$/);

    const [failedRun, status, refused] = await Promise.all([
      cli('failed', '--json'),
      cli('status', '--json'),
      cli('client', 'remove', 'test-client'),
    ]);
    expect(json(failedRun)).toMatchObject([
      { label: '@dead', state: 'needs_reconsent', consecutive_failures: 1 },
    ]);
    expect(status.code).toBe(1);
    expect(JSON.parse(status.stdout)).toMatchObject({
      grants: { needs_reconsent: 1 },
      oldest_failure: { label: '@dead' },
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/is used by 3 grant\(s\).*--force/);

    endpoint.push({ type: 'status', status: 400, json: { error: 'invalid_grant' } });
    const retry = await cli('retry', '--all-failed', '--json');
    expect(retry.code).toBe(1);
    expect(JSON.parse(retry.stdout)).toMatchObject([{ label: '@dead', ok: false }]);
    expect(retry.stderr).toBe('grantkeeper: 1 of 1 grant(s) still fail\n');

    expect(json(await cli('remove', '@dead', '--json'))).toMatchObject({ label: '@dead', removed: true });
    const gone = await cli('grant', 'show', '@dead');
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe('grantkeeper: no grant has the id or label "@dead" (grantkeeper grants)\n');
  });

  it('revoke without a revocation endpoint removes the grant and says so', async () => {
    await seed('@norevoke', 3600);
    const r = await cli('revoke', '@norevoke', '--json');
    expect(json({ ...r, stderr: '' })).toMatchObject({ label: '@norevoke', revoked: false, removed: true });
    expect(r.stderr).toMatch(/no revocation endpoint/);
  });

  it('answers input that needs the store with one clear line (exit 1), never a stack trace', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['seed', 'nosuch'], /no client is named "nosuch" \(known: test-client\)/],
      [['token', '@nobody'], /no grant has the id or label "@nobody"/],
      [['client', 'show', 'nosuch'], /no client is named "nosuch"/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(...args)));
    results.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect({ args, code: r.code }).toEqual({ args, code: 1 });
      expect(r.stderr).toMatch(new RegExp(`^grantkeeper: ${message.source}.*\n$`));
      expect(r.stdout).toBe('');
    });
  });

  it('status exits 1 while a grant is broken (it needs an operator like needs_reconsent)', async () => {
    const { grant } = await seed('@unopenable', 3600);
    // As a failed unseal leaves it: grantkeeper itself cannot use the grant.
    engine.service.app
      .database!.sqlite.prepare(`update grants set state = 'broken', last_error = 'unopenable' where id = ?`)
      .run(grant.id);
    const status = await cli('status', '--json');
    expect(JSON.parse(status.stdout)).toMatchObject({ grants: { broken: 1 } });
    expect(status.code).toBe(1);
    expect((await cli('remove', '@unopenable')).code).toBe(0);
  });

  it('never printed a token or the client secret, except token on stdout', () => {
    const tokenStdout = new Set(
      outputs.filter((o) => /^gk-test-at-[0-9a-f]+\n$/.test(o.stdout)).map((o) => o.stdout),
    );
    const text = outputs.map((o) => (tokenStdout.has(o.stdout) ? o.stderr : o.stdout + o.stderr)).join('\n');
    expect(leakedSecrets(text, [SECRET, ...endpoint.issuedTokens()])).toEqual([]);
  });
});
