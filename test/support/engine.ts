import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConfigInput, configSchema } from '../../src/config/config-schema.js';
import type { LoadedConfig } from '../../src/config/load-config.js';
import type { PrivateKeyInput } from '../../src/crypto/signing-key.js';
import { createLogger } from '../../src/log/logger.js';
import type { ProviderProfile } from '../../src/oauth/providers.js';
import type { ClientAuthMethod } from '../../src/oauth/token-client.js';
import type { TokenSet } from '../../src/oauth/token-response.js';
import { planAfterTokenResponse } from '../../src/policy/refresh-plan.js';
import {
  type Grantkeeper,
  type GrantkeeperOptions,
  startGrantkeeper,
} from '../../src/service/grantkeeper-service.js';
import { type RefreshService, startRefreshService } from '../../src/service/refresh-service.js';

/** Timings scaled down so a test sees many refresh cycles in seconds. */
export const FAST_TIMING: ConfigInput = {
  // Generous: a timeout is ambiguous with rotating tokens (the server may have rotated), so a
  // loaded CI machine must not hit it by accident. Fault tests that want timeouts lower it.
  requestTimeoutSeconds: 5,
  leaseMarginSeconds: 0.5,
  reconcileIntervalSeconds: 1,
  refreshTiming: { leadFraction: 0.3, minLeadMs: 300, minIntervalMs: 200 },
  backoff: { baseMs: 200, maxMs: 1000, maxRetryAfterMs: 5000 },
  concurrency: 4,
  // A quarter MiB is enough for a test's few commits, and cheap to write for every engine.
  diskReserveMb: 0.25,
};

export interface Engine {
  service: RefreshService;
  /** Every log line the engine wrote, for assertions and the secret scan. */
  logs: string[];
  dataDir: string;
  /** With `api`: the whole composition (HTTP API on an ephemeral port, metrics, alerts). */
  keeper?: Grantkeeper;
  stop(): Promise<void>;
}

export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'gk-data-'));
}

/** A test key shared by engines on one data dir (as GRANTKEEPER_KEY would be). */
export function testKey(): string {
  return randomBytes(32).toString('base64');
}

export async function startEngine(opts: {
  redisUrl: string;
  dataDir: string;
  key: string;
  /** Older keys still able to open values, as GRANTKEEPER_PREVIOUS_KEYS (a rotation in progress). */
  previousKeys?: string;
  config?: ConfigInput;
  /** Start the HTTP API (port 0 unless config says otherwise), alerts and metrics too. */
  api?: Omit<GrantkeeperOptions, 'env'> & { webhookSecret?: string };
}): Promise<Engine> {
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => logs.push(line) } });
  const loaded: LoadedConfig = {
    config: configSchema.parse({
      ...FAST_TIMING,
      ...(opts.api ? { apiPort: 0 } : {}),
      ...opts.config,
      dataDir: opts.dataDir,
      redisUrl: opts.redisUrl,
    }),
    secrets: {
      key: opts.key,
      ...(opts.previousKeys ? { previousKeys: opts.previousKeys } : {}),
      ...(opts.api?.webhookSecret ? { webhookSecret: opts.api.webhookSecret } : {}),
    },
  };
  if (opts.api) {
    const { webhookSecret: _secret, ...apiOptions } = opts.api;
    const keeper = await startGrantkeeper(loaded, logger, { ...apiOptions, env: {} });
    return { service: keeper.service, keeper, logs, dataDir: opts.dataDir, stop: () => keeper.stop() };
  }
  const service = await startRefreshService(loaded, logger, { env: {} });
  return { service, logs, dataDir: opts.dataDir, stop: () => service.stop() };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A generic-OIDC profile pointing at a test token endpoint. */
export function testProfile(
  tokenEndpoint: string,
  overrides: Partial<ProviderProfile> = {},
): ProviderProfile {
  return {
    kind: 'oidc',
    authorizationEndpoint: tokenEndpoint.replace(/\/token$/, '/auth'),
    tokenEndpoint,
    defaultScopes: ['openid', 'offline_access'],
    offlineScope: 'offline_access',
    extraAuthorizeParams: {},
    confidentialAuthMethod: 'client_secret_basic',
    rotatesRefreshTokens: true,
    oldRefreshTokensStayValid: false,
    defaultAccessLifetimeSec: 3600,
    refreshIdleLimitSec: 30 * 86_400,
    keepAliveIntervalSec: 7 * 86_400,
    ...overrides,
  };
}

export function addClient(
  engine: Engine,
  profile: ProviderProfile,
  client: {
    clientId: string;
    clientSecret?: string;
    /** Registers it for private_key_jwt (unless authMethod says otherwise). */
    privateKey?: PrivateKeyInput;
    authMethod?: ClientAuthMethod;
    name?: string;
  },
) {
  return engine.service.app.clients.upsert({
    name: client.name ?? 'test-client',
    profile,
    clientId: client.clientId,
    ...(client.clientSecret ? { clientSecret: client.clientSecret } : {}),
    ...(client.privateKey ? { privateKey: client.privateKey } : {}),
    authMethod:
      client.authMethod ??
      (client.privateKey ? 'private_key_jwt' : client.clientSecret ? 'client_secret_basic' : 'none'),
    scopes: profile.defaultScopes,
    now: Date.now(),
  });
}

/**
 * Stores a grant from a token response the way consent capture does, and schedules it. `issuedAt`
 * back-dates the response (a token issued an hour ago that lives an hour has little left).
 */
export async function seedGrant(
  engine: Engine,
  clientRef: string,
  profile: ProviderProfile,
  tokens: TokenSet & { refreshToken: string },
  label = `acct-${randomBytes(3).toString('hex')}`,
  issuedAt = Date.now(),
) {
  const now = Date.now();
  const plan = planAfterTokenResponse(tokens, issuedAt, now, profile, engine.service.engine.refresher.timing);
  const grant = await engine.service.app.grants.saveConsent({
    clientRef,
    label,
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    accessExpiresAt: plan.accessExpiresAt,
    accessLifetimeMs: plan.accessLifetimeMs,
    refreshTokenUsedAt: plan.refreshTokenUsedAt,
    nextRefreshAt: plan.nextRefreshAt,
    now,
  });
  await engine.service.engine.scheduler.schedule([grant]);
  return grant;
}

export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
