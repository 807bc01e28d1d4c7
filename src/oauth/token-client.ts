import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher, request } from 'undici';
import { ClientConfigError } from '../errors/grantkeeper-error.js';
import {
  CLIENT_ASSERTION_TYPE,
  type ClientSigningKey,
  clientAuthenticationAssertion,
  JWT_BEARER_GRANT_TYPE,
} from './client-assertion.js';
import {
  DEVICE_CODE_GRANT_TYPE,
  type DeviceAuthorization,
  deviceAuthorizationSchema,
} from './device-authorization.js';
import {
  classifyTokenError,
  networkError,
  notSentError,
  parseRetryAfter,
  responseTooLargeError,
  TokenEndpointError,
  timeoutError,
} from './token-errors.js';
import { parseTokenResponse, TokenResponseError, type TokenSet } from './token-response.js';

export const CLIENT_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
  'none',
] as const;
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number];

export interface TokenEndpointTarget {
  tokenEndpoint: string;
  clientId: string;
  clientSecret?: string;
  /** The secret a rotation replaced: tried once when `clientSecret` is refused with `invalid_client`. */
  fallbackClientSecret?: string;
  /** For `private_key_jwt`: an assertion signed with it authenticates each request. */
  signingKey?: ClientSigningKey;
  authMethod: ClientAuthMethod;
}

export interface TokenClientOptions {
  /** Bound on the whole request: connect, headers and body. */
  timeoutMs: number;
  maxResponseBytes?: number;
  userAgent?: string;
  /** Connections per origin; unlimited when absent. */
  connections?: number;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024;

/** A token request's form: a parameter given a list is sent once per value. */
type FormParams = Record<string, string | readonly string[]>;

/**
 * Where a request may run, on the monotonic clock (`performance.now()`), for a caller holding a
 * lease (invariant 2). Nothing is written after `abortAt`; the request is abandoned at `abortAt`;
 * an answer that arrived while the event loop was stalled is still read, but only until
 * `protectedUntil`, past which another holder may act on the grant.
 */
export interface SendWindow {
  abortAt: number;
  protectedUntil: number;
}

/** How a token request of a lease holder runs. */
export interface RequestOptions {
  window?: SendWindow;
  /** Told the HTTP status as soon as the answer's head arrives (for a trace span). */
  onResponse?: (status: number) => void;
}

interface SendOptions {
  onResponse?: (status: number) => void;
  /** False for a JWT-bearer request of a client that has no credentials beside its assertion. */
  authenticateClient?: boolean;
}

const withResponseHook = (opts: RequestOptions): SendOptions =>
  opts.onResponse ? { onResponse: opts.onResponse } : {};

/** A token response that could not be used, but whose rotated refresh token could. */
export class UnusableTokenResponse extends TokenEndpointError {
  readonly #response: TokenResponseError;
  constructor(status: number, response: TokenResponseError) {
    super({
      kind: 'transient',
      outcome: 'retry',
      code: 'protocol_error',
      status,
      message: `token endpoint answered HTTP ${status}, but ${response.message.replace(/^the token response /, 'the response ')}; its new refresh token is kept`,
    });
    this.#response = response;
  }
  salvagedRefreshToken(): string {
    return this.#response.salvagedRefreshToken() as string;
  }
}

export function isLoopbackHost(hostname: string): boolean {
  return (
    hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

/** One token request: its form, the values to redact from what comes back, and how it is sent. */
interface TokenPost {
  params: FormParams;
  secrets: string[];
  window?: SendWindow | undefined;
  send?: SendOptions;
}

/**
 * Parses an endpoint from config or metadata and refuses plain http off loopback: tokens and secrets
 * travel in these requests. The URL is not echoed whole since a mistyped one might hold credentials.
 */
export function assertSecureEndpoint(raw: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ClientConfigError(`${what} is not a valid absolute URL`);
  }
  if (url.username || url.password)
    throw new ClientConfigError(`${what} must not embed credentials in the URL`);
  if (url.hash) throw new ClientConfigError(`${what} ${url.origin} must not have a #fragment`);
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))) return url;
  throw new ClientConfigError(
    `${what} ${url.origin} must use https (plain http is only allowed on loopback: 127.0.0.0/8, ::1, localhost)`,
  );
}

// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined for HTTP Basic.
function formEncode(value: string): string {
  return new URLSearchParams([['', value]]).toString().slice(1);
}

export class TokenClient {
  readonly #agent: Agent;
  readonly #timeoutMs: number;
  readonly #maxResponseBytes: number;
  readonly #userAgent: string;

  constructor(opts: TokenClientOptions) {
    if (!(opts.timeoutMs > 0)) throw new RangeError('TokenClient timeoutMs must be positive');
    this.#timeoutMs = opts.timeoutMs;
    this.#maxResponseBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#userAgent = opts.userAgent ?? 'grantkeeper';
    // undici's per-phase timeouts are backstops; the abort timer in #post bounds the request as a
    // whole. They run longer so they never cut in before that timer's stall check.
    this.#agent = new Agent({
      connections: opts.connections ?? null,
      // One request per connection at a time: a slow answer never holds up the ones queued behind it.
      pipelining: 1,
      headersTimeout: opts.timeoutMs * 2,
      bodyTimeout: opts.timeoutMs * 2,
    });
  }

  /** The request timeout: a lease holder must have more than this left before it sends. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  async refresh(
    target: TokenEndpointTarget,
    refreshToken: string,
    opts: RequestOptions & { scope?: string } = {},
  ): Promise<TokenSet> {
    if (!refreshToken) throw new TypeError('refresh token is empty');
    const params: Record<string, string> = { grant_type: 'refresh_token', refresh_token: refreshToken };
    if (opts.scope) params.scope = opts.scope;
    return this.#post(target, {
      params,
      secrets: [refreshToken],
      window: opts.window,
      send: withResponseHook(opts),
    });
  }

  /**
   * RFC 6749 §4.4: a token for the client itself, asked for again whenever it nears expiry (there
   * is no refresh token). `resource` may repeat (RFC 8707).
   */
  clientCredentials(
    target: TokenEndpointTarget,
    request: { scope?: string; resource?: readonly string[]; audience?: string },
    opts: RequestOptions = {},
  ): Promise<TokenSet> {
    const params: FormParams = { grant_type: 'client_credentials' };
    if (request.scope) params.scope = request.scope;
    if (request.resource?.length) params.resource = request.resource;
    if (request.audience) params.audience = request.audience;
    return this.#post(target, { params, secrets: [], window: opts.window, send: withResponseHook(opts) });
  }

  /**
   * RFC 7523 §2.1: a token for whom the signed `assertion` names. The assertion authenticates the
   * request, so a client without other credentials (auth method none) sends no client_id either,
   * as Google's service accounts expect.
   */
  jwtBearer(
    target: TokenEndpointTarget,
    assertion: string,
    request: { scope?: string },
    opts: RequestOptions = {},
  ): Promise<TokenSet> {
    const params: FormParams = { grant_type: JWT_BEARER_GRANT_TYPE, assertion };
    if (request.scope) params.scope = request.scope;
    return this.#post(target, {
      params,
      secrets: [assertion],
      window: opts.window,
      send: { ...withResponseHook(opts), authenticateClient: target.authMethod !== 'none' },
    });
  }

  exchangeCode(
    target: TokenEndpointTarget,
    p: { code: string; redirectUri: string; codeVerifier: string },
  ): Promise<TokenSet> {
    const params = {
      grant_type: 'authorization_code',
      code: p.code,
      redirect_uri: p.redirectUri,
      code_verifier: p.codeVerifier,
    };
    return this.#post(target, { params, secrets: [p.code, p.codeVerifier] });
  }

  /**
   * RFC 8628 §3.1: starts device-code consent, authenticated like a token request. The answer is
   * parsed in full; one that is not an RFC 8628 response is refused without quoting it (it carries
   * the device code, which redeems for tokens).
   */
  async requestDeviceAuthorization(
    target: TokenEndpointTarget,
    endpoint: string,
    scopes: readonly string[],
  ): Promise<DeviceAuthorization> {
    const url = assertSecureEndpoint(endpoint, 'device authorization endpoint');
    const params: Record<string, string> = scopes.length > 0 ? { scope: scopes.join(' ') } : {};
    const { status, json, headers, now } = await this.#send(url, target, params, []);
    if (status !== 200) throw classifyTokenError({ status, body: json, headers, now, redact: [] });
    const parsed = deviceAuthorizationSchema.safeParse(json);
    if (parsed.success) {
      assertSecureEndpoint(parsed.data.verificationUri, 'the verification URI');
      if (parsed.data.verificationUriComplete) {
        assertSecureEndpoint(parsed.data.verificationUriComplete, 'the verification URI');
      }
      return parsed.data;
    }
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'} ${i.message}`);
    throw new TokenEndpointError({
      kind: 'transient',
      outcome: 'retry',
      code: 'bad_response',
      status,
      message: `device authorization endpoint answered HTTP 200 with an unusable response (${issues.join('; ')})`,
    });
  }

  /** RFC 8628 §3.4: one poll; `authorization_pending` and `slow_down` arrive as TokenEndpointErrors. */
  pollDeviceCode(target: TokenEndpointTarget, deviceCode: string): Promise<TokenSet> {
    if (!deviceCode) throw new TypeError('device code is empty');
    return this.#post(target, {
      params: { grant_type: DEVICE_CODE_GRANT_TYPE, device_code: deviceCode },
      secrets: [deviceCode],
    });
  }

  close(): Promise<void> {
    return this.#agent.close();
  }

  /**
   * RFC 7009 revocation, authenticated like a token request. Revoking a refresh token ends the whole
   * grant at most servers. Any 2xx is success (the spec answers 200 even for unknown tokens).
   */
  async revoke(
    target: TokenEndpointTarget,
    revocationEndpoint: string,
    token: string,
    hint: 'refresh_token' | 'access_token',
  ): Promise<void> {
    if (!token) throw new TypeError('token to revoke is empty');
    const url = assertSecureEndpoint(revocationEndpoint, 'revocation endpoint');
    const secrets = [token];
    const { status, json, headers, now } = await this.#send(
      url,
      target,
      { token, token_type_hint: hint },
      secrets,
    );
    if (status >= 200 && status < 300) return;
    throw classifyTokenError({ status, body: json, headers, now, redact: secrets });
  }

  /**
   * A token request, with the fallback secret of a rotation tried once if the current one is
   * refused with `invalid_client`. That retry spends nothing: a server authenticates the client
   * before it looks at the grant (RFC 6749 §3.2.1), so the refresh token or code is still unused,
   * and the retry runs in the same send window (invariant 2).
   */
  async #post(target: TokenEndpointTarget, post: TokenPost): Promise<TokenSet> {
    const { fallbackClientSecret, ...current } = target;
    if (fallbackClientSecret === undefined) return this.#postOnce(target, post);
    try {
      const set = await this.#postOnce(current, post);
      return { ...set, clientSecretUsed: 'current' };
    } catch (err) {
      if (!(err instanceof TokenEndpointError && err.code === 'invalid_client')) throw err;
      const fallback = { ...current, clientSecret: fallbackClientSecret };
      const set = await this.#postOnce(fallback, post);
      return { ...set, clientSecretUsed: 'previous' };
    }
  }

  async #postOnce(
    target: TokenEndpointTarget,
    { params, secrets, window, send }: TokenPost,
  ): Promise<TokenSet> {
    const url = assertSecureEndpoint(target.tokenEndpoint, 'token endpoint');
    const { status, json, headers, now } = await this.#send(url, target, params, secrets, window, send);
    let problem: string | undefined;
    if (status >= 200 && status < 300) {
      try {
        return parseTokenResponse(json);
      } catch (err) {
        if (!(err instanceof TokenResponseError)) throw err;
        if (err.salvagedRefreshToken() !== undefined) throw new UnusableTokenResponse(status, err);
        problem = err.message.replace(/^the token response carries /, '');
      }
    }
    throw classifyTokenError({ status, body: json, headers, now, redact: secrets, problem });
  }

  /** One authenticated form POST, bounded in time and size; `secrets` gains the client secret for redaction. */
  async #send(
    url: URL,
    target: TokenEndpointTarget,
    params: FormParams,
    secrets: string[],
    window: SendWindow = this.#defaultWindow(),
    { onResponse, authenticateClient = true }: SendOptions = {},
  ): Promise<{ status: number; json: unknown; headers: IncomingHttpHeaders; now: number }> {
    if (!target.clientId) throw new ClientConfigError('the OAuth client has an empty client id');
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      'user-agent': this.#userAgent,
    };
    const form = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      for (const one of typeof value === 'string' ? [value] : value) form.append(name, one);
    }
    if (authenticateClient) await authenticate(target, url, form, headers, secrets);

    const controller = new AbortController();
    const timer = abortAt(controller, window);
    const guard = { sendBy: window.abortAt, sent: false, refused: false };
    try {
      const res = await request(url, {
        method: 'POST',
        headers,
        body: form.toString(),
        dispatcher: this.#agent.compose(sendGuard(guard)),
        signal: controller.signal,
      });
      const now = Date.now();
      onResponse?.(res.statusCode);
      const limit = this.#maxResponseBytes;
      const declared = Number(res.headers['content-length']);
      const raw = declared > limit ? undefined : await readCapped(res.body, limit);
      if (raw === undefined) {
        discardBody(res.body);
        throw responseTooLargeError(limit, res.statusCode, parseRetryAfter(res.headers['retry-after'], now));
      }
      return { status: res.statusCode, json: parseJson(raw), headers: res.headers, now };
    } catch (err) {
      if (err instanceof TokenEndpointError) throw err;
      if (guard.refused) throw notSentError();
      throw controller.signal.aborted
        ? timeoutError(this.#timeoutMs, guard.sent)
        : networkError(err, guard.sent);
    } finally {
      timer.cancel();
    }
  }

  /** Without a lease (code exchange, revocation) the timeout alone bounds the request. */
  #defaultWindow(): SendWindow {
    const abortAt = performance.now() + this.#timeoutMs;
    return { abortAt, protectedUntil: Number.POSITIVE_INFINITY };
  }
}

/**
 * Adds the client's authentication to a token request (RFC 6749 §2.3, RFC 7523 §2.2). What it
 * sends that is secret joins `secrets`, so no server echo of it reaches a message.
 */
async function authenticate(
  target: TokenEndpointTarget,
  url: URL,
  form: URLSearchParams,
  headers: Record<string, string>,
  secrets: string[],
): Promise<void> {
  if (target.authMethod === 'none') {
    form.set('client_id', target.clientId);
    return;
  }
  if (target.authMethod === 'private_key_jwt') {
    if (!target.signingKey) {
      throw new ClientConfigError(
        `OAuth client ${target.clientId} authenticates with private_key_jwt but has no private key; ` +
          'register it again with --private-key-file',
      );
    }
    // Signed per request, never reused: a retry is a new assertion with a new jti.
    const assertion = await clientAuthenticationAssertion(target.signingKey, target.clientId, url.href);
    secrets.push(assertion);
    form.set('client_id', target.clientId);
    form.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    form.set('client_assertion', assertion);
    return;
  }
  const secret = target.clientSecret;
  if (!secret) {
    throw new ClientConfigError(
      `OAuth client ${target.clientId} authenticates with ${target.authMethod} but has no client secret; ` +
        'set its secret or register it as a public client (auth method none)',
    );
  }
  secrets.push(secret);
  if (target.authMethod === 'client_secret_basic') {
    const pair = `${formEncode(target.clientId)}:${formEncode(secret)}`;
    headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
  } else {
    form.set('client_id', target.clientId);
    form.set('client_secret', secret);
  }
}

/**
 * Refuses to write a request once its window has closed. undici calls onRequestStart synchronously
 * right before it writes the request to the socket, after connecting: the last point where a
 * process that stalled (SIGSTOP, a long GC pause, a blocked loop) since its fence can still decide
 * not to send.
 */
function sendGuard(guard: {
  sendBy: number;
  sent: boolean;
  refused: boolean;
}): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) =>
    dispatch(opts, {
      onRequestStart(controller, context) {
        if (performance.now() > guard.sendBy) {
          guard.refused = true;
          controller.abort(new Error('send window closed'));
          return;
        }
        guard.sent = true;
        handler.onRequestStart?.(controller, context);
      },
      onRequestUpgrade: (controller, statusCode, headers, socket) =>
        handler.onRequestUpgrade?.(controller, statusCode, headers, socket),
      onResponseStart: (controller, statusCode, headers, statusMessage) =>
        handler.onResponseStart?.(controller, statusCode, headers, statusMessage),
      onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
      onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
      onResponseError: (controller, error) => handler.onResponseError?.(controller, error),
    });
}

/** How late a timer may fire before we call it an event-loop stall rather than a slow server. */
const STALL_MS = 200;
/** After a stall, how long I/O that arrived meanwhile gets to be read before the verdict. */
const STALL_GRACE_MS = 100;

/**
 * Aborts at `window.abortAt`, counting only time in which the event loop was running. A timer that
 * fires late means the loop was blocked (a long synchronous db wait, a GC pause, SIGSTOP): a
 * response may be sitting unread in the socket, and throwing it away would lose a rotated refresh
 * token. Timers run before I/O in the loop, so the late timer first gives that I/O a short turn,
 * but never past `window.protectedUntil`, when another holder may take the grant over.
 */
function abortAt(controller: AbortController, window: SendWindow): { cancel(): void } {
  let timer: NodeJS.Timeout;
  const arm = (due: number) => {
    timer = setTimeout(
      () => {
        const now = performance.now();
        const late = now - due > STALL_MS;
        if (late && now + STALL_GRACE_MS < window.protectedUntil) arm(now + STALL_GRACE_MS);
        else controller.abort();
      },
      Math.max(0, due - performance.now()),
    );
  };
  arm(window.abortAt);
  return { cancel: () => clearTimeout(timer) };
}

/** Drops an unread or half-read body and its connection; undici reports that as an abort we expect. */
export function discardBody(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}

/** Reads at most `limit` bytes; undefined (and the stream destroyed) when the body is larger. */
export async function readCapped(body: Readable, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

function parseJson(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
}
