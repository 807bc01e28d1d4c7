import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { SESSION_COOKIE } from '../../src/api/auth/browser-sessions.js';
import { configSchema } from '../../src/config/config-schema.js';
import type { Grant } from '../../src/grants/grant.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
} from '../support/engine.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { type RawResponse, rawRequest } from '../support/raw-http.js';
import { collectRedisText, leakedSecrets } from '../support/secret-scan.js';

const secret = (what: string) => `${what}-${randomBytes(16).toString('hex')}`;

describe('HTTP API under hostile input', () => {
  let redis: PrivateRedis;
  let engine: Engine;
  let dataDir: string;
  let port: number;
  let apiKey: string;
  let grant: Grant;
  const key = testKey();
  const secrets: string[] = [key];
  const answers: RawResponse[] = [];

  /** Sends raw bytes to the API and keeps the answer for the final secret scan. */
  const send = async (request: string | Buffer) => {
    const res = await rawRequest('127.0.0.1', port, request);
    answers.push(res);
    return res;
  };
  const auth = () => `Authorization: Bearer ${apiKey}\r\n`;
  const host = () => `127.0.0.1:${port}`;
  const req = (method: string, path: string, headers = '', body = '') =>
    `${method} ${path} HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n${headers}` +
    `${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n${body}`;

  /** A JSON error with the status asked for, no stack trace and nothing secret. */
  function expectJsonError(res: RawResponse, status: number | RegExp) {
    if (typeof status === 'number') expect(res.status, res.body).toBe(status);
    else expect(String(res.status)).toMatch(status);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(res.body) as { error: unknown; message: unknown };
    expect(typeof body.error).toBe('string');
    expect(typeof body.message).toBe('string');
    expect(res.body).not.toMatch(/\bat .*\.(ts|js):\d+|node_modules|\n\s+at /);
    expect(leakedSecrets(res.body, secrets)).toEqual([]);
    return body;
  }

  beforeAll(async () => {
    redis = await startPrivateRedis();
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key, api: {} });
    port = Number(new URL(engine.keeper!.url).port);
    // Loopback http endpoint nobody listens on: the grant's hour-long token never needs it here.
    const profile = testProfile('http://127.0.0.1:9/token');
    const clientSecret = secret('client-secret');
    const client = await addClient(engine, profile, { clientId: 'hostile', clientSecret });
    const tokens = { accessToken: secret('access'), refreshToken: secret('refresh'), expiresIn: 3600 };
    grant = await seedGrant(engine, client.id, profile, tokens, '@hostile');
    apiKey = (
      await issueApiKey(engine.service.app.apiKeys, {
        name: 'fuzz',
        role: 'admin',
        now: Date.now(),
      })
    ).key;
    secrets.push(clientSecret, tokens.accessToken, tokens.refreshToken, apiKey);
  });

  afterAll(async () => {
    await engine?.stop();
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  it('binds 127.0.0.1 by default and is not reachable on any other interface address', async () => {
    expect(configSchema.parse({}).apiHost).toBe('127.0.0.1');
    expect(engine.keeper!.api.server.address()).toMatchObject({ address: '127.0.0.1' });
    const external = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && !a.internal && !a.address.startsWith('fe80:'))
      .map((a) => a!.address);
    for (const address of external) {
      const outcome = await new Promise<string>((resolve) => {
        const socket = connect({ host: address, port });
        socket.setTimeout(2000, () => {
          socket.destroy();
          resolve('timeout');
        });
        socket.on('connect', () => {
          socket.destroy();
          resolve('connected');
        });
        socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      });
      expect({ address, outcome }).not.toEqual({ address, outcome: 'connected' });
    }
  });

  it('has request, header, idle and keep-alive timeouts and a connection cap by default', () => {
    const server = engine.keeper!.api.server;
    expect(server.requestTimeout).toBe(10_000);
    expect(server.headersTimeout).toBe(10_000);
    expect(server.keepAliveTimeout).toBe(72_000);
    // Longer than a token read that waits out another holder's lease and then refreshes.
    expect(server.timeout).toBeGreaterThanOrEqual(2 * engine.service.engine.leaseMs);
    expect(server.maxConnections).toBe(512);
  });

  it('the control: a well-formed request works', async () => {
    const res = await send(req('GET', `/v1/grants/${grant.id}/token`, auth()));
    expect(res.status).toBe(200);
  });

  it('answers only Host headers naming it (DNS rebinding), except on the probes and metrics', async () => {
    const withHost = (path: string, hostHeader: string) =>
      send(`GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n${auth()}\r\n`);
    // A page on evil.example re-pointed at 127.0.0.1 reaches the port, but its requests still name evil.example.
    for (const foreign of [
      `evil.example:${port}`,
      'evil.example',
      '127.0.0.1',
      `127.0.0.1:${port + 1}`,
      `127.0.0.1:${port}.evil.example`,
      `localhost.evil.example:${port}`,
      '10.1.2.3:7420',
    ]) {
      for (const path of [
        '/',
        '/v1/grants',
        `/v1/grants/${grant.id}/token`,
        '/admin/queues',
        '/openapi.json',
      ]) {
        const res = await withHost(path, foreign);
        expect({ foreign, path, status: res.status }).toEqual({ foreign, path, status: 421 });
        expect(expectJsonError(res, 421).error).toBe('misdirected_request');
        expect(res.body).not.toContain('access_token');
      }
    }
    for (const own of [`127.0.0.1:${port}`, `localhost:${port}`, `LocalHost:${port}`, `[::1]:${port}`]) {
      expect((await withHost(`/v1/grants/${grant.id}/token`, own)).status).toBe(200);
    }
    // Probes and scrapers reach a pod by its IP: those three answer any Host.
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      expect((await withHost(path, '10.1.2.3:7420')).status).toBe(200);
    }
  });

  it('malformed JSON bodies are 400', async () => {
    const json = 'Content-Type: application/json\r\n';
    for (const body of [
      '{"mode":',
      '{mode: eager}',
      'null',
      '"eager"',
      '[]',
      '{"mode":"eager"}garbage',
      '\u0000',
    ]) {
      expectJsonError(await send(req('PUT', `/v1/grants/${grant.id}/mode`, auth() + json, body)), 400);
    }
    // Prototype pollution attempts are refused by the JSON parser, not merged.
    const polluted = await send(
      req('PUT', `/v1/grants/${grant.id}/mode`, auth() + json, '{"__proto__":{"mode":"keepalive"}}'),
    );
    expectJsonError(polluted, 400);
    expect(({} as { mode?: string }).mode).toBeUndefined();
    // Nesting deep enough to hurt a recursive parser, still under the body limit.
    const deep = `${'['.repeat(8000)}${']'.repeat(8000)}`;
    expectJsonError(await send(req('PUT', `/v1/grants/${grant.id}/mode`, auth() + json, deep)), 400);
  });

  it('bodies over the 16 KiB limit are 413, with or without a Content-Length', async () => {
    const big = JSON.stringify({ mode: 'eager', pad: 'x'.repeat(1024 * 1024) });
    const json = 'Content-Type: application/json\r\n';
    expectJsonError(await send(req('PUT', `/v1/grants/${grant.id}/mode`, auth() + json, big)), 413);
    const form = 'Content-Type: application/x-www-form-urlencoded\r\n';
    expectJsonError(await send(req('POST', '/login', form, `key=${'k'.repeat(100_000)}`)), 413);
    // Chunked: no length up front, so the limit must cut the stream itself.
    const chunk = 'x'.repeat(8192);
    const chunked =
      `PUT /v1/grants/${grant.id}/mode HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n${auth()}${json}` +
      `Transfer-Encoding: chunked\r\n\r\n${`2000\r\n${chunk}\r\n`.repeat(8)}0\r\n\r\n`;
    expectJsonError(await send(chunked), 413);
    // A Content-Length that lies about a huge body is refused before it is read.
    expectJsonError(
      await send(
        `PUT /v1/grants/${grant.id}/mode HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n${auth()}${json}Content-Length: 99999999999\r\n\r\n{}`,
      ),
      413,
    );
  });

  it('wrong content types are 415, and a form cannot reach a JSON route', async () => {
    const body = '{"mode":"eager"}';
    for (const type of [
      'application/xml',
      'multipart/form-data; boundary=x',
      'application/jsonx',
      'image/png',
    ]) {
      const res = await send(
        req('PUT', `/v1/grants/${grant.id}/mode`, `${auth()}Content-Type: ${type}\r\n`, body),
      );
      expectJsonError(res, 415);
    }
    // fastify parses text/plain as a string, which the route's schema then refuses.
    const text = await send(
      req('PUT', `/v1/grants/${grant.id}/mode`, `${auth()}Content-Type: text/plain\r\n`, body),
    );
    expectJsonError(text, 400);
    const form = await send(
      req(
        'PUT',
        `/v1/grants/${grant.id}/mode`,
        `${auth()}Content-Type: application/x-www-form-urlencoded\r\n`,
        'mode=eager&x=1',
      ),
    );
    expectJsonError(form, 400);
  });

  it('path traversal and encoded NULs in ids are plain unknown grants or bad requests', async () => {
    const paths = [
      '/v1/grants/..%2F..%2F..%2Fetc%2Fpasswd/token',
      '/v1/grants/..%2f..%2fgrantkeeper.db',
      '/v1/grants/%2e%2e%2f%2e%2e%2fgrantkeeper.key/token',
      '/v1/grants/%00',
      `/v1/grants/${grant.id}%00/token`,
      `/v1/grants/${grant.id}%00.json`,
      '/v1/grants/%C0%AE%C0%AE%2F',
      '/v1/grants/%E0%A4%A',
      '/v1/grants/%',
      `/v1/grants/${'A'.repeat(5000)}/token`,
      '/v1/grants/@hostile%27%20OR%20%271%27=%271/token',
      '/v1/grants/../../../etc/passwd',
      '/v1/../../grantkeeper.key',
      '/..%2F..%2Fetc%2Fpasswd',
    ];
    for (const path of paths) {
      const res = await send(req('GET', path, auth()));
      const body = expectJsonError(res, /^(40[0-4]|414)$/);
      // 'Bad Request' and 414 are fastify's own answers to a path that does not percent-decode or a too-long id.
      expect(body.error).toMatch(/^(not_found|bad_request|forbidden|Bad Request|URI Too Long)$/);
      expect(res.body).not.toMatch(/root:|gk1\.|sqlite/i);
    }
    // Without a key the same probes learn nothing but 401 (or 404 for routes that do not exist).
    const anon = await send(req('GET', '/v1/grants/..%2F..%2Fetc%2Fpasswd/token'));
    expectJsonError(anon, 401);
  });

  it('unknown or malformed query parameters are 400, never ignored into a token', async () => {
    for (const query of [
      'foo=bar',
      'min_valid=10&debug=1',
      'min_valid=-1',
      'min_valid=1e999',
      'min_valid=NaN',
      'min_valid=86401',
      'min_valid=10&min_valid=20',
      '__proto__[x]=1',
      'force=yes',
    ]) {
      const res = await send(req('GET', `/v1/grants/${grant.id}/token?${query}`, auth()));
      const body = expectJsonError(res, 400);
      expect(res.body).not.toContain('access_token');
      expect(body.error).toBe('bad_request');
    }
    expectJsonError(await send(req('GET', '/v1/grants?events=abc', auth())), 400);
  });

  it('header injection and oversized headers are refused with a JSON 400/431', async () => {
    const cases = [
      // A bare LF or CR inside a header value: the start of a smuggled header or response split.
      `GET /v1/grants HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\nX-A: a\rInjected: 1\r\n${auth()}\r\n`,
      `GET /v1/grants HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\nX-A: a\u0000b\r\n${auth()}\r\n`,
      `GET /v1/grants HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\nX A: b\r\n\r\n`,
      // Request smuggling: both framings at once.
      `POST /login HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `GET /v1/grants HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab`,
      `GET /v1/grants HTTP/9.9\r\nHost: ${host()}\r\n\r\n`,
      `GET /v1/grants\u0000 HTTP/1.1\r\nHost: ${host()}\r\n\r\n`,
    ];
    for (const raw of cases) expectJsonError(await send(raw), 400);
    const huge = await send(req('GET', '/v1/grants', `${auth()}X-Big: ${'h'.repeat(64 * 1024)}\r\n`));
    expectJsonError(huge, 431);
    const many = Array.from({ length: 3000 }, (_, i) => `X-${i}: v\r\n`).join('');
    expectJsonError(await send(req('GET', '/v1/grants', auth() + many)), /^4(00|31)$/);
  });

  it('bad credentials of every shape are a 401 JSON error', async () => {
    for (const header of [
      'Authorization: Bearer\r\n',
      'Authorization: Bearer gk_\r\n',
      `Authorization: Bearer ${apiKey}x\r\n`,
      `Authorization: Bearer ${apiKey.slice(0, -1)}\r\n`,
      `Authorization: bearer ${apiKey.toUpperCase()}\r\n`,
      `Authorization: Basic ${Buffer.from(`x:${apiKey}`).toString('base64')}\r\n`,
      `Authorization: Bearer gk_${'a'.repeat(10_000)}\r\n`,
      `Cookie: ${SESSION_COOKIE}=%00%0d%0a\r\n`,
    ]) {
      expectJsonError(await send(req('GET', `/v1/grants/${grant.id}/token`, header)), 401);
    }
  });

  it('unknown routes and methods are JSON 404s', async () => {
    for (const [method, path] of [
      ['DELETE', `/v1/grants/${grant.id}`],
      ['PATCH', '/v1/grants'],
      ['GET', '/v2/grants'],
      ['TRACE', '/'],
    ] as const) {
      expectJsonError(await send(req(method, path, auth())), 404);
    }
  });

  it('stayed up, answered no 5xx, and logged nothing secret', async () => {
    const health = await send(req('GET', '/healthz'));
    expect(health.status).toBe(200);
    expect(answers.filter((a) => a.status >= 500)).toEqual([]);
    expect(engine.logs.filter((l) => l.includes('request failed'))).toEqual([]);
    const redisText = await collectRedisText(redis.url);
    const everything = [...engine.logs, ...answers.map((a) => JSON.stringify(a)), redisText].join('\n');
    // The one 200 above legitimately carried the access token; every other answer must not.
    const answerText = answers
      .filter((a) => a.status !== 200)
      .map((a) => JSON.stringify(a))
      .join('\n');
    expect(leakedSecrets(answerText, secrets)).toEqual([]);
    expect(leakedSecrets([...engine.logs, redisText].join('\n'), secrets)).toEqual([]);
    expect(everything.length).toBeGreaterThan(0);
    expect(answers.length).toBeGreaterThan(50);
  });
});
