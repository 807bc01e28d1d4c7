import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeUrl } from '../../src/cli/commands/healthcheck.js';
import { findFreePort } from '../../src/redis/managed-redis.js';
import { type CliProcess, runCli, spawnCli } from '../support/cli.js';
import { removeDir, tempDataDir, testKey, waitFor } from '../support/engine.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

describe('grantkeeper healthcheck (the container HEALTHCHECK)', () => {
  let redis: PrivateRedis;
  let dataDir: string;
  let env: Record<string, string>;
  let service: CliProcess;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    dataDir = tempDataDir();
    env = {
      GRANTKEEPER_DATA_DIR: dataDir,
      GRANTKEEPER_KEY: testKey(),
      REDIS_URL: redis.url,
      // As in the container: a wildcard bind, probed over loopback.
      GRANTKEEPER_API_HOST: '0.0.0.0',
      GRANTKEEPER_API_PORT: String(await findFreePort()),
    };
    service = spawnCli(['run'], env);
    await waitFor(() => service.stdout().includes('grantkeeper API listening'), 'the API').catch(
      (err: Error) => {
        throw new Error(`${err.message}\nstderr: ${service.stderr()}`);
      },
    );
  });

  afterAll(async () => {
    service?.child.kill('SIGKILL');
    await service?.exited;
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  it('reaches a wildcard bind over loopback', () => {
    expect(probeUrl('0.0.0.0', 7420)).toBe('http://127.0.0.1:7420/readyz');
    expect(probeUrl('::', 7420)).toBe('http://[::1]:7420/readyz');
    expect(probeUrl('10.0.0.5', 80)).toBe('http://10.0.0.5:80/readyz');
  });

  it('exits 0 while the service is ready, 1 naming the check while the refresh queue is paused', async () => {
    const ready = await runCli(['healthcheck'], env);
    expect(ready).toMatchObject({ code: 0, stdout: 'ready\n', stderr: '' });

    expect((await runCli(['queue', 'pause'], env)).code).toBe(0);
    const paused = await runCli(['healthcheck'], env);
    expect(paused.code).toBe(1);
    expect(paused.stderr).toMatch(
      /^grantkeeper: not ready: http:\/\/127\.0\.0\.1:\d+\/readyz answered 503 \(queue paused\)\n$/,
    );
    expect((await runCli(['queue', 'resume'], env)).code).toBe(0);
    expect((await runCli(['healthcheck'], env)).code).toBe(0);
  });

  it('exits 1 in one line when nothing answers, and refuses a random port in one line', async () => {
    const port = String(await findFreePort());
    const nobody = await runCli(['healthcheck', '--timeout', '1000'], { ...env, GRANTKEEPER_API_PORT: port });
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toBe(
      `grantkeeper: not ready: no answer from http://127.0.0.1:${port}/readyz (ECONNREFUSED)\n`,
    );

    const random = await runCli(['healthcheck'], { ...env, GRANTKEEPER_API_PORT: '0' });
    expect(random.code).toBe(2);
    expect(random.stderr).toContain('GRANTKEEPER_API_PORT is 0');
    expect(random.stderr).not.toContain('    at ');
  });
});
