/**
 * grantkeeper as a library: fresh access tokens for the grants a grantkeeper service keeps alive,
 * either in-process against the same data folder or from a running API.
 *
 *   import { createKeeper } from 'grantkeeper';
 *   const keeper = await createKeeper({ baseUrl: 'http://127.0.0.1:7420', apiKey: process.env.GK_KEY });
 *   const res = await keeper.fetch('@ourbot', 'https://api.x.com/2/users/me');
 */
import { fromErrorBody } from '../api/errors.js';
import { errorBody, tokenView } from '../api/schemas.js';
import { loadConfig } from '../config/load-config.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { createLogger, type Logger } from '../log/logger.js';
import { redisForTools } from '../redis/managed-redis-endpoint.js';
import { configuredRedis, connectRedis } from '../redis/redis-endpoint.js';
import type { AccessTokenReader } from '../refresh/access-token-reader.js';
import { createRefreshEngine } from '../service/refresh-engine.js';
import { openStoreContext } from '../service/store-context.js';

/**
 * Why no token could be had: `code` is one of ERROR_CODES (the README's table), the same in
 * process and over HTTP; `retryAt` says when asking again can help.
 */
export { ERROR_CODES, type ErrorCode } from '../errors/error-codes.js';
export { GrantkeeperError } from '../errors/grantkeeper-error.js';
export { ALERT_EVENTS, type AlertEvent } from '../notify/alert-policy.js';
export { SIGNATURE_HEADER, verifyWebhookSignature } from '../notify/webhook-signature.js';

export interface KeeperToken {
  grantId: string;
  accessToken: string;
  tokenType: string;
  /** Epoch milliseconds. */
  expiresAt: number;
  /** This read had to refresh the grant first. */
  refreshed: boolean;
}

export interface GetAccessTokenOptions {
  /** The token must stay valid at least this many seconds; a shorter-lived one is refreshed first. */
  minValid?: number;
  /** Refresh even if the current token looks good (e.g. the resource server said 401). */
  force?: boolean;
}

export interface Keeper {
  getAccessToken(idOrLabel: string, options?: GetAccessTokenOptions): Promise<KeeperToken>;
  /**
   * `fetch` with the grant's bearer token. On a 401 it forces one refresh and retries once (only
   * when the body can be sent twice: not a stream); a second 401 is returned as is.
   */
  fetch(
    idOrLabel: string,
    input: string | URL,
    init?: RequestInit & GetAccessTokenOptions,
  ): Promise<Response>;
  close(): Promise<void>;
}

export type KeeperOptions =
  /** Against a running grantkeeper API (`grantkeeper run` or `serve`). */
  | { baseUrl: string; apiKey: string; fetch?: typeof fetch }
  /** In-process, on the service's data folder, configured like the CLI (environment, config file). */
  | { env?: NodeJS.ProcessEnv; configPath?: string; logger?: Logger; fetch?: typeof fetch };

export async function createKeeper(options: KeeperOptions = {}): Promise<Keeper> {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const source = 'baseUrl' in options ? remoteSource(options, fetchImpl) : await localSource(options);
  return {
    getAccessToken: source.read,
    close: source.close,
    async fetch(idOrLabel, input, init = {}) {
      const { minValid, force, ...requestInit } = init;
      const send = (token: KeeperToken) => {
        const headers = new Headers(requestInit.headers);
        headers.set('authorization', `Bearer ${token.accessToken}`);
        return fetchImpl(input, { ...requestInit, headers });
      };
      const first = await source.read(idOrLabel, {
        ...(minValid === undefined ? {} : { minValid }),
        ...(force ? { force } : {}),
      });
      const res = await send(first);
      if (res.status !== 401 || requestInit.body instanceof ReadableStream) return res;
      await res.body?.cancel();
      return send(await source.read(idOrLabel, { force: true }));
    },
  };
}

interface TokenSource {
  read(idOrLabel: string, options?: GetAccessTokenOptions): Promise<KeeperToken>;
  close(): Promise<void>;
}

function remoteSource(options: { baseUrl: string; apiKey: string }, fetchImpl: typeof fetch): TokenSource {
  const base = options.baseUrl.replace(/\/+$/, '');
  const headers = { authorization: `Bearer ${options.apiKey}`, accept: 'application/json' };
  return {
    async read(idOrLabel, readOptions = {}) {
      const url = `${base}/v1/grants/${encodeURIComponent(idOrLabel)}/token`;
      const minValid = Math.ceil(readOptions.minValid ?? 0);
      // A forced refresh spends a refresh token, so the API takes it only as a POST.
      const res = readOptions.force
        ? await fetchImpl(url, {
            method: 'POST',
            headers: { ...headers, 'content-type': 'application/json' },
            body: JSON.stringify({ min_valid: minValid, force: true }),
          })
        : await fetchImpl(`${url}?${new URLSearchParams({ min_valid: String(minValid) })}`, { headers });
      const body: unknown = await res.json().catch(() => undefined);
      if (!res.ok) {
        const error = errorBody.safeParse(body);
        const retryAfter = Number(res.headers.get('retry-after'));
        throw fromErrorBody(
          error.success ? error.data : undefined,
          res.status,
          retryAfter > 0 ? Date.now() + retryAfter * 1000 : undefined,
        );
      }
      const token = tokenView.safeParse(body);
      if (!token.success) {
        throw new GrantkeeperError('bad_response', 'grantkeeper answered 200 without a token body', {
          httpStatus: res.status,
        });
      }
      return {
        grantId: token.data.grant_id,
        accessToken: token.data.access_token,
        tokenType: token.data.token_type,
        expiresAt: Date.parse(token.data.expires_at),
        refreshed: token.data.refreshed,
      };
    },
    close: async () => {},
  };
}

async function localSource(options: {
  env?: NodeJS.ProcessEnv;
  configPath?: string;
  logger?: Logger;
}): Promise<TokenSource> {
  const loaded = loadConfig(options.env ?? process.env, options.configPath);
  const logger = options.logger ?? createLogger({ level: 'warn', destination: process.stderr });
  const app = await openStoreContext(loaded, logger, { create: false });
  // With the service's Redis the worker's next job is planned at once; without it (or while it is
  // down) the service's reconciler plans it. Never wait on Redis: a token read must not hang.
  const redis = redisForTools(configuredRedis(loaded), app.dataDir);
  const connection = redis
    ? connectRedis(redis, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 })
    : undefined;
  connection?.on('error', () => {});
  const engine = createRefreshEngine(app, loaded.config, logger, connection ? { connection } : {});
  const reader: AccessTokenReader = engine.reader;
  return {
    async read(idOrLabel, readOptions = {}) {
      // A failed read throws the reader's GrantkeeperError: the same codes as over HTTP.
      const token = await reader.read(idOrLabel, {
        ...(readOptions.minValid === undefined ? {} : { minValidSec: readOptions.minValid }),
        ...(readOptions.force ? { force: true } : {}),
      });
      return {
        grantId: token.grantId,
        accessToken: token.accessToken,
        tokenType: token.tokenType,
        expiresAt: token.expiresAt,
        refreshed: token.refreshed,
      };
    },
    async close() {
      await engine.close();
      connection?.disconnect();
      await app.close();
    },
  };
}
