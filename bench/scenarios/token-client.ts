/// <reference path="../support/simple-oauth2.d.ts" />
import * as oidc from 'openid-client';
import { AuthorizationCode } from 'simple-oauth2';
import { TokenClient } from '../../src/oauth/token-client.js';
import { figure, type ScenarioResult } from '../support/report.js';
import { BENCH_CLIENT_SECRET } from '../support/seed.js';
import type { BenchContext } from '../support/workload.js';

const CLIENT_ID = 'bench-client';
const CONCURRENT_LANES = 16;
const ROUNDS = 3;

/** One refresh: spends `refreshToken`, returns the rotated one. */
type Refresh = (refreshToken: string) => Promise<string>;

interface Contender {
  name: string;
  refresh: Refresh;
  close(): Promise<void>;
}

function contenders(tokenEndpoint: string): Contender[] {
  const ours = new TokenClient({ timeoutMs: 15_000 });
  const target = {
    tokenEndpoint,
    clientId: CLIENT_ID,
    clientSecret: BENCH_CLIENT_SECRET,
    authMethod: 'client_secret_basic' as const,
  };
  const url = new URL(tokenEndpoint);
  const simple = new AuthorizationCode({
    client: { id: CLIENT_ID, secret: BENCH_CLIENT_SECRET },
    auth: { tokenHost: url.origin, tokenPath: url.pathname },
    options: { authorizationMethod: 'header' },
  });
  const config = new oidc.Configuration(
    { issuer: url.origin, token_endpoint: tokenEndpoint },
    CLIENT_ID,
    undefined,
    oidc.ClientSecretBasic(BENCH_CLIENT_SECRET),
  );
  // The bench endpoint is plain http on loopback.
  oidc.allowInsecureRequests(config);
  const rotated = (token: string | undefined) => {
    if (!token) throw new Error('the endpoint did not rotate the refresh token');
    return token;
  };
  return [
    {
      name: 'grantkeeper TokenClient',
      refresh: async (rt) => rotated((await ours.refresh(target, rt)).refreshToken),
      close: () => ours.close(),
    },
    {
      name: 'simple-oauth2',
      refresh: async (rt) =>
        rotated(
          (await simple.createToken({ access_token: 'at', refresh_token: rt, expires_in: 0 }).refresh()).token
            .refresh_token,
        ),
      close: async () => {},
    },
    {
      name: 'openid-client',
      refresh: async (rt) => rotated((await oidc.refreshTokenGrant(config, rt)).refresh_token),
      close: async () => {},
    },
  ];
}

/** `count` refreshes along one rotating chain, one after the other. */
async function sequential(refresh: Refresh, count: number): Promise<number> {
  const started = performance.now();
  let rt = 'rt_seed';
  for (let i = 0; i < count; i++) rt = await refresh(rt);
  return count / ((performance.now() - started) / 1000);
}

/** `count` refreshes over independent chains, CONCURRENT_LANES in flight. */
async function concurrent(refresh: Refresh, count: number): Promise<number> {
  const started = performance.now();
  let issued = 0;
  const lane = async (laneIndex: number) => {
    let rt = `rt_seed_${laneIndex}`;
    while (issued < count) {
      issued += 1;
      rt = await refresh(rt);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT_LANES }, (_, i) => lane(i)));
  return count / ((performance.now() - started) / 1000);
}

/**
 * Scenario 6: our token-endpoint client against simple-oauth2 and openid-client on the same
 * endpoint, N sequential and N concurrent refreshes each. Rounds are interleaved and the best
 * round counts, so a burst of load from a neighbour hurts no contender more than another.
 */
export async function tokenClient(ctx: BenchContext, count: number): Promise<ScenarioResult> {
  const all = contenders(ctx.tokenEndpoint);
  const best = new Map<string, { sequential: number; concurrent: number }>();
  const startedAt = Date.now();
  let done = 0;
  try {
    for (const c of all) await sequential(c.refresh, Math.min(100, count)); // warm-up: JIT and connections
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of all) {
        const seq = await sequential(c.refresh, count);
        const conc = await concurrent(c.refresh, count);
        const prev = best.get(c.name) ?? { sequential: 0, concurrent: 0 };
        best.set(c.name, {
          sequential: Math.max(prev.sequential, seq),
          concurrent: Math.max(prev.concurrent, conc),
        });
        done += 2 * count;
        ctx.progress.update('6 token-endpoint clients', done, ROUNDS * all.length * 2 * count, startedAt);
      }
    }
    ctx.progress.finishLine();
  } finally {
    for (const c of all) await c.close();
  }
  const ours = best.get('grantkeeper TokenClient') as { sequential: number; concurrent: number };
  const peers = [...best.entries()].filter(([name]) => name !== 'grantkeeper TokenClient');
  const figures = (['sequential', 'concurrent'] as const).flatMap((mode) =>
    peers.map(([name, rates]) => {
      const holds = ours[mode] >= rates[mode];
      return figure({
        name: `${mode} refreshes/s vs ${name}`,
        value: ours[mode],
        unit: '/s',
        better: 'higher',
        reference: { name, value: rates[mode] },
        target: { text: 'at least as fast', holds },
      });
    }),
  );
  return {
    id: 'token-client',
    title: '6 Token-endpoint client',
    figures,
    details: {
      count,
      concurrency: CONCURRENT_LANES,
      rounds: ROUNDS,
      bestRatesPerSecond: Object.fromEntries(best),
    },
  };
}
