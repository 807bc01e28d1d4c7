import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ClientConfigError } from '../../src/errors/grantkeeper-error.js';
import { type SendWindow, TokenClient, type TokenEndpointTarget } from '../../src/oauth/token-client.js';
import { TokenEndpointError } from '../../src/oauth/token-errors.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';

let fault: FaultEndpoint;
let client: TokenClient;
const TIMEOUT_MS = 500;

beforeAll(async () => {
  fault = await startFaultEndpoint();
  client = new TokenClient({ timeoutMs: TIMEOUT_MS, userAgent: 'grantkeeper-test' });
});

afterAll(async () => {
  await client.close();
  await fault.close();
});

afterEach(() => {
  fault.setDefault({ type: 'rotate', expiresIn: 3600 });
});

const publicTarget = (): TokenEndpointTarget => ({
  tokenEndpoint: fault.url,
  clientId: 'public-client',
  authMethod: 'none',
});

async function refreshError(target: TokenEndpointTarget = publicTarget()): Promise<TokenEndpointError> {
  const { refreshToken } = fault.mintGrant();
  const err = await client.refresh(target, refreshToken).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenEndpointError);
  const e = err as TokenEndpointError;
  // Whatever went wrong, the message and description never carry what we sent.
  expect(e.message).not.toContain(refreshToken);
  expect(e.message).not.toContain('gk-test-');
  expect(e.description ?? '').not.toContain('gk-test-');
  return e;
}

const last = () => {
  const r = fault.requests.at(-1);
  if (!r) throw new Error('no request recorded');
  return r;
};

describe('wire format', () => {
  it('client_secret_basic form-urlencodes id and secret into HTTP Basic', async () => {
    const { refreshToken } = fault.mintGrant();
    const target: TokenEndpointTarget = {
      tokenEndpoint: fault.url,
      clientId: 'my client:1',
      clientSecret: 's3cr3t/+ ~é',
      authMethod: 'client_secret_basic',
    };
    await client.refresh(target, refreshToken, { scope: 'tweet.read offline.access' });
    const r = last();
    expect(r.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(r.headers.accept).toBe('application/json');
    expect(r.headers['user-agent']).toBe('grantkeeper-test');
    expect(r.headers.authorization).toBe(
      `Basic ${Buffer.from('my+client%3A1:s3cr3t%2F%2B+%7E%C3%A9').toString('base64')}`,
    );
    expect(r.form).toEqual({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      scope: 'tweet.read offline.access',
    });
  });

  it('client_secret_post sends id and secret in the body', async () => {
    const { refreshToken } = fault.mintGrant();
    await client.refresh(
      {
        tokenEndpoint: fault.url,
        clientId: 'cid',
        clientSecret: 'csecret',
        authMethod: 'client_secret_post',
      },
      refreshToken,
    );
    const r = last();
    expect(r.headers.authorization).toBeUndefined();
    expect(r.form).toEqual({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: 'cid',
      client_secret: 'csecret',
    });
  });

  it('none sends only the client id', async () => {
    const { refreshToken } = fault.mintGrant();
    await client.refresh(publicTarget(), refreshToken);
    const r = last();
    expect(r.headers.authorization).toBeUndefined();
    expect(r.form).toEqual({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: 'public-client',
    });
  });

  it('exchanges an authorization code with PKCE', async () => {
    const set = await client.exchangeCode(publicTarget(), {
      code: 'the-code',
      redirectUri: 'http://127.0.0.1:53682/callback',
      codeVerifier: 'v'.repeat(43),
    });
    expect(set.accessToken).toMatch(/^gk-test-at-/);
    expect(set.refreshToken).toMatch(/^gk-test-rt-/);
    expect(last().form).toEqual({
      grant_type: 'authorization_code',
      code: 'the-code',
      redirect_uri: 'http://127.0.0.1:53682/callback',
      code_verifier: 'v'.repeat(43),
      client_id: 'public-client',
    });
  });

  it('refuses a secret-based method without a secret before sending anything', async () => {
    const before = fault.requests.length;
    for (const authMethod of ['client_secret_basic', 'client_secret_post'] as const) {
      await expect(
        client.refresh({ tokenEndpoint: fault.url, clientId: 'cid', authMethod }, 'rt'),
      ).rejects.toBeInstanceOf(ClientConfigError);
    }
    expect(fault.requests.length).toBe(before);
  });

  it('refuses plain http off loopback and accepts loopback forms', async () => {
    for (const tokenEndpoint of [
      'http://example.com/token',
      'http://localhost.example.com/token',
      'ftp://x/token',
    ]) {
      await expect(client.refresh({ ...publicTarget(), tokenEndpoint }, 'rt')).rejects.toBeInstanceOf(
        ClientConfigError,
      );
    }
    const { refreshToken } = fault.mintGrant();
    const set = await client.refresh(
      { ...publicTarget(), tokenEndpoint: fault.url.replace('127.0.0.1', 'localhost') },
      refreshToken,
    );
    expect(set.accessToken).toMatch(/^gk-test-at-/);
  });
});

describe('rotation', () => {
  it('returns fresh tokens and spends the old refresh token', async () => {
    const { refreshToken } = fault.mintGrant();
    const set = await client.refresh(publicTarget(), refreshToken);
    expect(set).toMatchObject({ expiresIn: 3600, tokenType: 'bearer' });
    expect(set.refreshToken).toMatch(/^gk-test-rt-/);
    expect(set.refreshToken).not.toBe(refreshToken);
    expect(fault.isAccessTokenValid(set.accessToken)).toBe(true);

    const reuses = fault.reuseDetections;
    const replay = await client.refresh(publicTarget(), refreshToken).catch((e: unknown) => e);
    expect(replay).toMatchObject({ kind: 'permanent', code: 'invalid_grant', spentToken: true });
    expect(fault.reuseDetections).toBe(reuses + 1);
    // Like X and Microsoft, a replay revokes the whole grant.
    expect(fault.isAccessTokenValid(set.accessToken)).toBe(false);
  });

  it('omitRefreshToken keeps the old refresh token valid (Google)', async () => {
    const { refreshToken } = fault.mintGrant();
    fault.push({ type: 'rotate', omitRefreshToken: true }, { type: 'rotate', omitRefreshToken: true });
    const first = await client.refresh(publicTarget(), refreshToken);
    expect(first.refreshToken).toBeUndefined();
    const second = await client.refresh(publicTarget(), refreshToken);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(fault.isAccessTokenValid(second.accessToken)).toBe(true);
  });

  it('passes expires_in through as a number or leaves it absent', async () => {
    fault.push({ type: 'rotate', expiresIn: '7200' }, { type: 'rotate', expiresIn: null });
    expect((await client.refresh(publicTarget(), fault.mintGrant().refreshToken)).expiresIn).toBe(7200);
    expect((await client.refresh(publicTarget(), fault.mintGrant().refreshToken)).expiresIn).toBeUndefined();
  });
});

describe('permanent errors', () => {
  it('an unknown refresh token is invalid_grant', async () => {
    const e = await client.refresh(publicTarget(), 'gk-test-rt-unknown').catch((err: unknown) => err);
    expect(e).toMatchObject({
      kind: 'permanent',
      outcome: 'needs_reconsent',
      code: 'invalid_grant',
      status: 400,
    });
  });

  it("X's spent-token 400 needs re-consent", async () => {
    fault.push({
      type: 'status',
      status: 400,
      json: { error: 'invalid_request', error_description: 'Value passed for the token was invalid.' },
    });
    expect(await refreshError()).toMatchObject({
      kind: 'permanent',
      outcome: 'needs_reconsent',
      code: 'invalid_request',
      spentToken: true,
    });
  });

  it('invalid_client is a client error', async () => {
    fault.push({ type: 'status', status: 401, json: { error: 'invalid_client' } });
    expect(await refreshError()).toMatchObject({ kind: 'permanent', outcome: 'client_error', status: 401 });
  });
});

describe('transient errors', () => {
  it.each([500, 503])('%i retries', async (status) => {
    fault.push({ type: 'status', status, body: 'upstream down' });
    expect(await refreshError()).toMatchObject({
      kind: 'transient',
      outcome: 'retry',
      code: `http_${status}`,
      status,
    });
  });

  it('429 carries Retry-After', async () => {
    fault.push({
      type: 'status',
      status: 429,
      json: { error: 'rate_limited' },
      headers: { 'retry-after': '17' },
    });
    expect(await refreshError()).toMatchObject({
      kind: 'transient',
      code: 'rate_limited',
      retryAfterMs: 17_000,
    });
  });

  it('a hanging server times out as a whole', async () => {
    fault.push({ type: 'hang' });
    const started = Date.now();
    expect(await refreshError()).toMatchObject({ kind: 'transient', code: 'timeout' });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 20);
    expect(elapsed).toBeLessThan(TIMEOUT_MS + 1000);
  });

  it('slow headers time out', async () => {
    fault.push({ type: 'rotate', latencyMs: TIMEOUT_MS + 300 });
    expect(await refreshError()).toMatchObject({ code: 'timeout' });
  });

  it('a body dripping in under the per-chunk timeout still hits the whole-request timeout', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const drip = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(drip));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const started = Date.now();
      const e = await refreshError({ ...publicTarget(), tokenEndpoint: `http://127.0.0.1:${port}/token` });
      expect(e).toMatchObject({ kind: 'transient', code: 'timeout' });
      expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 500);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('an HTML 200 is bad_response', async () => {
    fault.push({
      type: 'status',
      status: 200,
      body: '<html><body>Login</body></html>',
      contentType: 'text/html',
    });
    expect(await refreshError()).toMatchObject({ kind: 'transient', code: 'bad_response', status: 200 });
  });

  it('an HTML error page keeps its status', async () => {
    fault.push({ type: 'status', status: 502, body: '<html>Bad gateway</html>', contentType: 'text/html' });
    expect(await refreshError()).toMatchObject({ kind: 'transient', code: 'http_502' });
  });

  it('a 200 without access_token is bad_response', async () => {
    fault.push({ type: 'status', status: 200, json: { token_type: 'bearer', expires_in: 3600 } });
    expect(await refreshError()).toMatchObject({ kind: 'transient', code: 'bad_response' });
  });

  it('a 10 MB body is abandoned early', async () => {
    const bytes = 10 * 1024 * 1024;
    fault.hugeBytesWritten = 0;
    fault.push({ type: 'huge', bytes });
    const started = Date.now();
    expect(await refreshError()).toMatchObject({
      kind: 'transient',
      code: 'response_too_large',
      status: 200,
    });
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS);
    // The server stops once we hang up; kernel socket buffers absorb some, never the whole body.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fault.hugeBytesWritten).toBeLessThan(bytes);
  });

  it('an oversized Content-Length is refused before reading', async () => {
    const small = new TokenClient({ timeoutMs: TIMEOUT_MS, maxResponseBytes: 64 });
    try {
      fault.push({
        type: 'status',
        status: 400,
        json: { error: 'invalid_grant', error_description: 'x'.repeat(200) },
      });
      const e = await small.refresh(publicTarget(), 'rt').catch((err: unknown) => err);
      expect(e).toMatchObject({ kind: 'transient', code: 'response_too_large', status: 400 });
    } finally {
      await small.close();
    }
  });

  it('a response cut mid-body is transient', async () => {
    fault.push({ type: 'truncated' });
    expect(await refreshError()).toMatchObject({ kind: 'transient', outcome: 'retry', code: 'network' });
  });

  it('an unreachable endpoint is a network error', async () => {
    const other = await startFaultEndpoint();
    await other.close();
    expect(await refreshError({ ...publicTarget(), tokenEndpoint: other.url })).toMatchObject({
      kind: 'transient',
      code: 'network',
    });
  });

  it('keeps working after faults (connections recover)', async () => {
    const { refreshToken } = fault.mintGrant();
    expect((await client.refresh(publicTarget(), refreshToken)).accessToken).toMatch(/^gk-test-at-/);
  });
});

describe('event-loop stalls', () => {
  /** A token endpoint in a process of its own, so it answers while this one is blocked. */
  const SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    process.stdout.write('received\\n');
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: 'at-after-stall', token_type: 'bearer', expires_in: 60, refresh_token: 'rt-after-stall' }));
    }, 50);
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

  /**
   * The stall server in its own process, and a request to it that is blocked right after sending.
   * The window is made once the server is up: starting a process can take longer than the timeout.
   */
  const children: ChildProcess[] = [];
  // However a test ends, no stall server outlives the file (it would keep vitest from exiting).
  afterEach(() => {
    for (const c of children.splice(0)) c.kill();
  });

  async function stalledRequest(windowFrom?: (now: number) => SendWindow) {
    const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const lines = createInterface({ input: child.stdout });
    const next = () => new Promise<string>((resolve) => lines.once('line', resolve));
    const port = Number(await next());
    const received = next();
    const window = windowFrom?.(performance.now());
    const pending = client
      .refresh(
        { ...publicTarget(), tokenEndpoint: `http://127.0.0.1:${port}/token` },
        'rt-0',
        window ? { window } : {},
      )
      .then(
        (tokens) => tokens,
        (err: unknown) => err,
      );
    await received;
    // A synchronous wait three times the timeout (as a long SQLite busy wait, a GC pause or a
    // SIGSTOP would be): the answer comes in meanwhile.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TIMEOUT_MS * 3);
    return { outcome: await pending, stop: () => child.kill() };
  }

  it('a response that arrived while the event loop was blocked past the timeout is still read', async () => {
    const { outcome, stop } = await stalledRequest();
    stop();
    expect(outcome).toMatchObject({ accessToken: 'at-after-stall', refreshToken: 'rt-after-stall' });
  });

  it('reads a late answer only while the lease protects it, never past that', async () => {
    const inside = await stalledRequest((now) => ({
      abortAt: now + TIMEOUT_MS,
      protectedUntil: now + TIMEOUT_MS * 10,
    }));
    inside.stop();
    expect(inside.outcome).toMatchObject({ accessToken: 'at-after-stall' });
    const outside = await stalledRequest((now) => ({
      abortAt: now + TIMEOUT_MS,
      protectedUntil: now + TIMEOUT_MS * 2,
    }));
    outside.stop();
    // Past the protected window another holder may have taken the grant: the answer is abandoned,
    // and the error says it may have reached the provider.
    expect(outside.outcome).toBeInstanceOf(TokenEndpointError);
    expect(outside.outcome).toMatchObject({ code: 'timeout', requestSent: true, answerLost: true });
  });
});

describe('the send window', () => {
  it('writes nothing once the window has closed (the process stalled after its fence)', async () => {
    const { refreshToken } = fault.mintGrant();
    const before = fault.requests.length;
    const past = performance.now() - 1;
    const err = await client
      .refresh(publicTarget(), refreshToken, { window: { abortAt: past, protectedUntil: past } })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toMatchObject({ code: 'not_sent', requestSent: false, answerLost: false });
    expect(fault.requests.length).toBe(before);
    // The connection pool is fine afterwards.
    expect((await client.refresh(publicTarget(), refreshToken)).accessToken).toMatch(/^gk-test-at-/);
  });

  it('says a refused connection never sent anything', async () => {
    const err = await refreshError({ ...publicTarget(), tokenEndpoint: 'http://127.0.0.1:9/token' });
    expect(err).toMatchObject({ code: 'network', requestSent: false, answerLost: false });
  });
});
