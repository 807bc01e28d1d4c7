import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openData } from '../faults/support.js';
import {
  type Engine,
  removeDir,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

const MIN = 60_000;
/** Access expiries, minutes from now, in the order the grants are planned (their next refresh). */
const EXPIRES_IN_MIN = [50, -30, 20, 5, -120, 40, 1, 30, -5, 10, 15, 60];

/**
 * After an outage the reconciler rebuilds the lost jobs of overdue grants: the worker must reach
 * them most urgent first (nearest access expiry), not in the order they were planned or their ids.
 */
describe('catch-up after Redis lost its jobs', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine | undefined;
  let dataDir: string;
  const key = testKey();
  const byToken = new Map<string, number>();

  beforeAll(async () => {
    [redis, endpoint] = await Promise.all([startPrivateRedis(), startFaultEndpoint()]);
    endpoint.setDefault({ type: 'rotate', expiresIn: 3600 });
    dataDir = tempDataDir();
  });

  afterAll(async () => {
    await engine?.stop();
    await endpoint?.close();
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  it('refreshes overdue grants in order of access expiry at concurrency 1', async () => {
    // The worker is not running: every grant went overdue (planned 2 h to 1 h ago, in this order)
    // while their access tokens expire in a different order, some already expired.
    const app = await openData(dataDir, key);
    const now = Date.now();
    try {
      const client = await app.clients.upsert({
        name: 'catch-up',
        profile: testProfile(endpoint.url),
        clientId: 'catch-up',
        authMethod: 'none',
        scopes: [],
        now,
      });
      for (const [i, minutes] of EXPIRES_IN_MIN.entries()) {
        const minted = endpoint.mintGrant();
        byToken.set(minted.refreshToken, minutes);
        await app.grants.saveConsent({
          clientRef: client.id,
          label: `@catch-up-${i}`,
          accessToken: minted.accessToken,
          refreshToken: minted.refreshToken,
          accessExpiresAt: now + minutes * MIN,
          accessLifetimeMs: 60 * MIN,
          refreshTokenUsedAt: now - 60 * MIN,
          nextRefreshAt: now - 120 * MIN + i * MIN,
          now,
        });
      }
    } finally {
      await app.close();
    }
    engine = await startEngine({ redisUrl: redis.url, dataDir, key, config: { concurrency: 1 } });
    const ours = () => endpoint.requests.filter((r) => byToken.has(r.form.refresh_token ?? ''));
    await waitFor(() => ours().length === EXPIRES_IN_MIN.length, 'every overdue grant refreshed', 30_000);
    const order = ours().map((r) => byToken.get(r.form.refresh_token ?? ''));
    expect(order).toEqual([...EXPIRES_IN_MIN].sort((a, b) => a - b));
  }, 60_000);
});
