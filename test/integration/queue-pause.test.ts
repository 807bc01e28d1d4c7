import { describe, expect, it } from 'vitest';
import { CleanupStack, seedGrants, startRun, writeRunConfig } from '../faults/support.js';
import { runCli } from '../support/cli.js';
import { removeDir, sleep, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { startFaultEndpoint } from '../support/fault-endpoint.js';
import { startPrivateRedis } from '../support/private-redis.js';
import { parsePrometheus } from '../support/prometheus.js';

const SECRET = 'queue-pause-client-secret';
const PAUSED_AT_START =
  'the refresh queue is paused (a pause outlives restarts): none of its jobs run until it is resumed with grantkeeper queue resume or the dashboard';
const PAUSED_WHILE_RUNNING =
  'the refresh queue was paused: none of its jobs run until it is resumed with grantkeeper queue resume or the dashboard';

/** A pause (a key in Redis, set from the dashboard) stops every refresh; here it is never silent. */
describe('a paused refresh queue', { timeout: 240_000 }, () => {
  it('is reported by status (exit 1), the gauge and run, and grantkeeper queue resume resumes it', async () => {
    const cleanup = new CleanupStack();
    try {
      const redis = await startPrivateRedis();
      cleanup.add(() => redis.stop());
      const endpoint = await startFaultEndpoint();
      cleanup.add(() => endpoint.close());
      const dataDir = tempDataDir();
      cleanup.add(() => removeDir(dataDir));
      const key = testKey();
      const client = {
        endpoints: { authorization: endpoint.url.replace(/token$/, 'auth'), token: endpoint.url },
        clientId: 'gk',
        clientSecret: SECRET,
      };
      const configPath = writeRunConfig(dataDir, client);
      // Due now: only the pause keeps it from being refreshed.
      await seedGrants({
        dataDir,
        key,
        client,
        count: 1,
        mint: async () => ({ ...endpoint.mintGrant(), expiresIn: 3600 }),
      });
      const env = { GRANTKEEPER_DATA_DIR: dataDir, GRANTKEEPER_KEY: key };
      const cli = (...args: string[]) => runCli(args, { ...env, REDIS_URL: redis.url }, 60_000);

      const noRedis = await runCli(['queue', 'pause'], env, 60_000);
      expect(noRedis.code).toBe(1);
      expect(noRedis.stderr).toBe(
        'grantkeeper: cannot pause the refresh queue: Redis is not running (start grantkeeper run, or set REDIS_URL)\n',
      );

      const paused = await cli('queue', 'pause', '--json');
      expect(paused.stderr).toBe('');
      expect(paused.code).toBe(0);
      expect(JSON.parse(paused.stdout)).toEqual({ queue: 'refresh', paused: true });
      const status = await cli('status', '--json');
      expect(status.code).toBe(1);
      expect(JSON.parse(status.stdout)).toMatchObject({
        queue: { paused: true },
        redis: { state: 'connected' },
        grants: { active: 1 },
      });
      const text = await cli('status');
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/queue:\s+paused: nothing is refreshed until grantkeeper queue resume/);

      const run = startRun({
        cleanup,
        configPath,
        dataDir,
        key,
        redisUrl: redis.url,
        clientSecret: SECRET,
        env: { GRANTKEEPER_RECONCILE_INTERVAL_SECONDS: '1' },
      });
      expect((await run.waitForLog(PAUSED_AT_START, 60_000)).level).toBe(50);
      const api = await run.apiUrl();
      const gauge = async () =>
        parsePrometheus(await (await fetch(`${api}/metrics`)).text()).find(
          (s) => s.name === 'grantkeeper_queue_paused' && s.labels.queue === 'refresh',
        )?.value;
      expect(await gauge()).toBe(1);
      await sleep(2000);
      expect(endpoint.requests).toHaveLength(0);

      const resumed = await cli('queue', 'resume');
      expect(resumed.code).toBe(0);
      expect(resumed.stdout).toBe('the refresh queue is running\n');
      await run.waitForLog('the refresh queue was resumed', 30_000);
      await waitFor(() => endpoint.requests.length >= 1, 'the refresh once resumed', 30_000);
      expect(await gauge()).toBe(0);
      expect((await cli('status', '--json')).code).toBe(0);

      // Paused while running: one error line, not one per look.
      expect((await cli('queue', 'pause')).code).toBe(0);
      expect((await run.waitForLog(PAUSED_WHILE_RUNNING, 30_000)).level).toBe(50);
      await sleep(2500);
      const pauseLines = run.logs().filter((l) => /the refresh queue (is|was) paused/.test(String(l.msg)));
      expect(pauseLines.map((l) => l.msg)).toEqual([PAUSED_AT_START, PAUSED_WHILE_RUNNING]);
      expect(await gauge()).toBe(1);
      expect((await run.terminate()).code).toBe(0);
      expect(run.cli.stderr()).toBe('');
    } finally {
      await cleanup.run();
    }
  });
});
