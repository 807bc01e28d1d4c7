import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fetch } from 'undici';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { configSchema } from '../../src/config/config-schema.js';
import type { Grant } from '../../src/grants/grant.js';
import { createLogger } from '../../src/log/logger.js';
import { type ProviderProfile, resolveProvider } from '../../src/oauth/providers.js';
import type { TokenSet } from '../../src/oauth/token-response.js';
import type { RateLimit } from '../../src/pacing/rate-limit.js';
import { openStoreContext, type StoreContext } from '../../src/service/store-context.js';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { CleanupStack } from '../../src/util/cleanup-stack.js';
import { packageRoot } from '../../src/util/package-root.js';
import { type CliProcess, spawnCli } from '../support/cli.js';
import { removeDir, tempDataDir, waitFor } from '../support/engine.js';
import { consentTokens } from '../support/oidc-consent.js';
import { DEFAULT_REDIRECT_URI, type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

export { CleanupStack };

/**
 * Shared pieces of the process-level fault scenarios: the real `grantkeeper run` as a child process,
 * grants seeded into its data folder beforehand, and a read of the db afterwards.
 */

export const CLIENT_NAME = 'faulty';
export const SECRET_ENV = 'FAULTY_CLIENT_SECRET';

/** Scaled-down timing for the config file (the env has no knob for these). */
export const FAST_FILE_TIMING = {
  refreshTiming: { leadFraction: 0.3, minLeadMs: 300, minIntervalMs: 200, jitterFraction: 0.3 },
  backoff: { baseMs: 200, maxMs: 1000, maxRetryAfterMs: 5000 },
};

/**
 * A `grantkeeper run` child's environment for fault scenarios: 3 s token requests, a 1 s lease
 * margin and a reconcile every second, so a scenario sees takeovers and replans in seconds.
 */
export function workerEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    GRANTKEEPER_REQUEST_TIMEOUT_SECONDS: '3',
    GRANTKEEPER_LEASE_MARGIN_SECONDS: '1',
    GRANTKEEPER_RECONCILE_INTERVAL_SECONDS: '1',
    ...overrides,
  };
}

export interface ClientSpec {
  endpoints: { authorization: string; token: string };
  clientId: string;
  clientSecret: string;
  authMethod?: 'client_secret_basic' | 'client_secret_post';
}

export interface RotatingProvider {
  redis: PrivateRedis;
  oidc: OidcServer;
  dataDir: string;
}

/**
 * What most scenarios stand on: a private redis-server, oidc-provider rotating refresh tokens on
 * every use with one confidential client, and a data folder; all undone by `cleanup`.
 */
export async function startRotatingProvider(
  cleanup: CleanupStack,
  opts: { clientId: string; clientSecret: string; accessTokenTtlSec: number; redisPersistence?: boolean },
): Promise<RotatingProvider> {
  const redis = await startPrivateRedis({ persistence: opts.redisPersistence });
  cleanup.add(() => redis.stop());
  const oidc = await startRotatingOidc(cleanup, opts);
  const dataDir = tempDataDir();
  cleanup.add(() => removeDir(dataDir));
  return { redis, oidc, dataDir };
}

/** oidc-provider rotating refresh tokens on every use, with one confidential client; closed by `cleanup`. */
export async function startRotatingOidc(
  cleanup: CleanupStack,
  opts: { clientId: string; clientSecret: string; accessTokenTtlSec: number },
): Promise<OidcServer> {
  const oidc = await startOidcServer({
    accessTokenTtlSec: opts.accessTokenTtlSec,
    rotateRefreshToken: true,
    clients: [
      {
        clientId: opts.clientId,
        clientSecret: opts.clientSecret,
        redirectUris: [DEFAULT_REDIRECT_URI],
        authMethod: 'client_secret_basic',
      },
    ],
  });
  cleanup.add(() => oidc.close());
  return oidc;
}

/**
 * The provider's client as `run` sees it (token requests to `tokenEndpoint`, e.g. a gate in front
 * of the provider), and consent of a fresh account straight at the provider, for seeding.
 */
export async function providerClient(
  oidc: OidcServer,
  clientId: string,
  clientSecret: string,
  tokenEndpoint = oidc.tokenEndpoint,
): Promise<{ client: ClientSpec; consent(account: string): Promise<TokenSet & { refreshToken: string }> }> {
  const direct = { authorization: oidc.authorizationEndpoint, token: oidc.tokenEndpoint };
  const profile = await resolveProvider({ kind: 'oidc', endpoints: direct });
  const target = {
    tokenEndpoint: oidc.tokenEndpoint,
    clientId,
    clientSecret,
    authMethod: 'client_secret_basic' as const,
  };
  return {
    client: { endpoints: { ...direct, token: tokenEndpoint }, clientId, clientSecret },
    consent: (account) => consentTokens(oidc, profile, target, DEFAULT_REDIRECT_URI, account),
  };
}

/** The JSON config file `run --config` reads: one oidc client with explicit endpoints. */
export function writeRunConfig(
  dataDir: string,
  client: ClientSpec,
  extra: Record<string, unknown> = {},
  /** More settings of the client itself (a rate limit). */
  clientSettings: Record<string, unknown> = {},
): string {
  const path = join(dataDir, 'grantkeeper.json');
  writeFileSync(
    path,
    JSON.stringify({
      ...FAST_FILE_TIMING,
      ...extra,
      clients: [
        {
          name: CLIENT_NAME,
          provider: 'oidc',
          endpoints: client.endpoints,
          clientId: client.clientId,
          clientSecretEnv: SECRET_ENV,
          authMethod: client.authMethod ?? 'client_secret_basic',
          ...clientSettings,
        },
      ],
    }),
  );
  return path;
}

/** The store of a scenario: the data folder's SQLite file, or the shared PostgreSQL at `databaseUrl`. */
export async function openData(dataDir: string, key: string, databaseUrl?: string): Promise<StoreContext> {
  return openStoreContext(
    { config: configSchema.parse({ dataDir, ...(databaseUrl ? { databaseUrl } : {}) }), secrets: { key } },
    createLogger({ level: 'silent' }),
  );
}

/**
 * Registers the client and stores `count` grants as consent capture would, all due at `dueAt`
 * (default: now). `mint` produces each grant's first tokens (consent at oidc-provider, or the fault
 * endpoint's mintGrant).
 */
export async function seedGrants(opts: {
  dataDir: string;
  key: string;
  client: ClientSpec;
  count: number;
  mint: (i: number) => Promise<TokenSet & { refreshToken: string }>;
  dueAt?: (i: number) => number;
  databaseUrl?: string;
  /** The client's rate limit, as `run`'s config gives it (the upsert here would clear it otherwise). */
  rateLimit?: RateLimit;
}): Promise<{ ids: string[]; profile: ProviderProfile }> {
  const app = await openData(opts.dataDir, opts.key, opts.databaseUrl);
  try {
    const profile = {
      ...(await resolveProvider({ kind: 'oidc', endpoints: opts.client.endpoints })),
      ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}),
    };
    const client = await app.clients.upsert({
      name: CLIENT_NAME,
      profile,
      clientId: opts.client.clientId,
      clientSecret: opts.client.clientSecret,
      authMethod: opts.client.authMethod ?? 'client_secret_basic',
      scopes: ['openid', 'offline_access'],
      now: Date.now(),
    });
    const ids: string[] = [];
    for (let i = 0; i < opts.count; i++) {
      const tokens = await opts.mint(i);
      const now = Date.now();
      const lifetime = (tokens.expiresIn ?? 3600) * 1000;
      const grant = await app.grants.saveConsent({
        clientRef: client.id,
        label: `@fault-${i}-${randomBytes(2).toString('hex')}`,
        accessToken: tokens.accessToken,
        refreshToken: tokens.refreshToken,
        accessExpiresAt: now + lifetime,
        accessLifetimeMs: lifetime,
        refreshTokenUsedAt: now,
        nextRefreshAt: opts.dueAt?.(i) ?? now,
        now,
      });
      ids.push(grant.id);
    }
    return { ids, profile };
  } finally {
    await app.close();
  }
}

export async function createApiKey(dataDir: string, key: string, databaseUrl?: string): Promise<string> {
  const app = await openData(dataDir, key, databaseUrl);
  try {
    return (await issueApiKey(app.apiKeys, { name: 'faults', role: 'admin', now: Date.now() })).key;
  } finally {
    await app.close();
  }
}

export interface GrantSnapshot {
  row: Grant;
  accessToken: string;
  refreshToken: string;
}

/** Every grant with its tokens opened, read while the workers may still be running (WAL). */
export async function snapshotGrants(
  dataDir: string,
  key: string,
  databaseUrl?: string,
): Promise<GrantSnapshot[]> {
  const app = await openData(dataDir, key, databaseUrl);
  try {
    const snapshots: GrantSnapshot[] = [];
    for (const { id } of await app.grants.list()) {
      const stored = await app.grants.get(id);
      if (!stored) continue;
      const { grant, tokens } = stored;
      snapshots.push({ row: grant, accessToken: tokens.accessToken(), refreshToken: tokens.refreshToken() });
    }
    return snapshots;
  } finally {
    await app.close();
  }
}

export interface RunProcess {
  cli: CliProcess;
  pid: number;
  /** Parsed JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  waitForLog(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The API's URL from its "grantkeeper API listening" line. */
  apiUrl(): Promise<string>;
  running(): boolean;
  /** SIGTERM, then the exit with how long it took. */
  terminate(): Promise<{ code: number | null; ms: number }>;
  /** SIGKILL, as a crash; resolves once the child is reaped. */
  kill9(): Promise<void>;
}

/** `grantkeeper run --config <path>` as a child process against the given Redis, or its own managed one. */
export function startRun(opts: {
  /** Kills the child (-9) when the scenario is over, whatever happened. */
  cleanup: CleanupStack;
  configPath: string;
  dataDir: string;
  key: string;
  /** Without it, `run` starts the data folder's managed redis-server. */
  redisUrl?: string;
  clientSecret: string;
  env?: Record<string, string>;
  /** `run` by default; `serve` runs the API alone. */
  command?: 'run' | 'serve';
  /** Runs it under this command (a network namespace of the test's: `ip netns exec NAME`). */
  wrap?: string[];
}): RunProcess {
  const cli = spawnCli(
    [opts.command ?? 'run', '--config', opts.configPath],
    {
      GRANTKEEPER_DATA_DIR: opts.dataDir,
      GRANTKEEPER_KEY: opts.key,
      ...(opts.redisUrl ? { REDIS_URL: opts.redisUrl } : {}),
      [SECRET_ENV]: opts.clientSecret,
      GRANTKEEPER_API_PORT: '0',
      GRANTKEEPER_LOG_LEVEL: 'info',
      ...opts.env,
    },
    opts.wrap ? { wrap: opts.wrap } : {},
  );
  let exited = false;
  cli.exited.then(
    () => {
      exited = true;
    },
    () => {
      exited = true;
    },
  );
  const logs = () =>
    cli
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
  const waitForLog = (msg: string | RegExp, timeoutMs = 20_000) =>
    waitFor(
      () => {
        if (exited)
          throw new Error(`grantkeeper run exited early\nstdout: ${cli.stdout()}\nstderr: ${cli.stderr()}`);
        return logs().find((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))));
      },
      `log line ${String(msg)}`,
      timeoutMs,
    );
  const run: RunProcess = {
    cli,
    pid: cli.child.pid ?? 0,
    logs,
    waitForLog,
    apiUrl: async () => String((await waitForLog('grantkeeper API listening')).url),
    running: () => !exited,
    async terminate() {
      const started = Date.now();
      if (!exited) cli.child.kill('SIGTERM');
      const result = await cli.exited;
      return { code: result.code, ms: Date.now() - started };
    },
    async kill9() {
      if (!exited) cli.child.kill('SIGKILL');
      await cli.exited.catch(() => {});
    },
  };
  opts.cleanup.add(() => run.kill9());
  return run;
}

/**
 * A slow network hop in front of a token endpoint: each request is held for `holdMs` before it is
 * forwarded, and dropped unforwarded if its client went away meanwhile. So a worker killed while
 * its requests are held has provably not reached the provider: the only crash window a client can
 * make safe (a crash after the provider rotated loses the new token, whatever the client does).
 */
export interface HoldingGate {
  url: string;
  holdMs: number;
  arrivals: Array<{ at: number; refreshToken: string }>;
  held: number;
  forwarded: number;
  dropped: number;
  /** How often each refresh token reached the provider; any count above 1 is a replay. */
  forwardedTokens: Map<string, number>;
  close(): Promise<void>;
}

export async function startHoldingGate(upstream: string, holdMs: number): Promise<HoldingGate> {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) gone = true;
    });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const refreshToken = new URLSearchParams(body).get('refresh_token') ?? '';
    gate.arrivals.push({ at: Date.now(), refreshToken });
    gate.held++;
    await new Promise((r) => setTimeout(r, gate.holdMs));
    gate.held--;
    if (gone || res.destroyed) {
      gate.dropped++;
      return;
    }
    gate.forwarded++;
    gate.forwardedTokens.set(refreshToken, (gate.forwardedTokens.get(refreshToken) ?? 0) + 1);
    const answer = await fetch(upstream, {
      method: 'POST',
      headers: {
        'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded',
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      },
      body,
    });
    const text = await answer.text();
    res.writeHead(answer.status, {
      'content-type': answer.headers.get('content-type') ?? 'application/json',
      'cache-control': 'no-store',
    });
    res.end(text);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const gate: HoldingGate = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    holdMs,
    arrivals: [],
    held: 0,
    forwarded: 0,
    dropped: 0,
    forwardedTokens: new Map(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return gate;
}

/**
 * Labels of grants whose stored access token the provider rejects although it has not expired yet:
 * a revoked token. An expired one is lateness (a loaded machine), which the lateness checks cover.
 */
export async function inactiveAccessTokens(
  introspect: (token: string) => Promise<{ active: boolean }>,
  grants: GrantSnapshot[],
): Promise<string[]> {
  const checkedAt = Date.now();
  const results = await Promise.all(
    grants
      .filter((g) => g.row.accessExpiresAt > checkedAt + 500)
      .map(async (g) => ((await introspect(g.accessToken)).active ? undefined : g.row.label)),
  );
  return results.filter((l): l is string => l !== undefined);
}

export function envSeconds(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

export const soak = process.env.GK_SOAK === '1';

/** Takes the write lock, says so, holds it, lets go. */
const HOLD_LOCK = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.exec('BEGIN EXCLUSIVE');
process.stdout.write('locked\\n');
setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[2]));
`;

/**
 * Another process takes the database's write lock (as it would: better-sqlite3 waits
 * synchronously, so a holder in the test's own process could never let go while a worker in it
 * waits) and lets go after `lockMs`.
 */
export async function lockDatabase(dataDir: string, lockMs: number): Promise<{ released: Promise<unknown> }> {
  const holder = spawn(process.execPath, ['-e', HOLD_LOCK, join(dataDir, DB_FILE_NAME), String(lockMs)], {
    cwd: packageRoot(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const released = new Promise((resolve) => holder.once('exit', resolve));
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  return { released };
}

/** SIGSTOP and SIGCONT, as a debugger, `docker pause` or a VM stall would freeze a process. */
export function pauseProcess(pid: number): void {
  process.kill(pid, 'SIGSTOP');
}

export function resumeProcess(pid: number): void {
  process.kill(pid, 'SIGCONT');
}

/** Linux: the process state letter in /proc/<pid>/stat is T while stopped. */
export function isStopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
  } catch {
    return false;
  }
}
