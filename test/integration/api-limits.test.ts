import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { rawRequest } from '../support/raw-http.js';

const MAX_CONNECTIONS = 4;

/** Opens a socket and resolves with everything the server sent once it closes it. */
function openSocket(port: number): { socket: Socket; closed: Promise<string> } {
  const socket = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  socket.on('data', (d) => chunks.push(d));
  const closed = new Promise<string>((resolve) => {
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', () => {});
  });
  return { socket, closed };
}

describe('API timeouts and caps', () => {
  let redis: PrivateRedis;
  let engine: Engine;
  let dataDir: string;
  let port: number;
  let apiKey: string;
  const sockets: Socket[] = [];
  const host = () => `127.0.0.1:${port}`;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    dataDir = tempDataDir();
    engine = await startEngine({
      redisUrl: redis.url,
      dataDir,
      key: testKey(),
      // Scaled down so a cut is seen in seconds; the defaults are checked in api-hostile.
      api: {
        apiLimits: { requestTimeoutMs: 1000, timeoutCheckIntervalMs: 200, maxConnections: MAX_CONNECTIONS },
      },
    });
    port = Number(new URL(engine.keeper!.url).port);
    apiKey = (
      await issueApiKey(engine.service.app.apiKeys, {
        name: 'limits',
        role: 'admin',
        now: Date.now(),
      })
    ).key;
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await engine?.stop();
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  it('cuts a slow-loris client that never finishes its headers, or its body, with a 408', async () => {
    const starts = [
      `GET /v1/grants HTTP/1.1\r\nHost: ${host()}\r\n`,
      `PUT /v1/grants/x/mode HTTP/1.1\r\nHost: ${host()}\r\nAuthorization: Bearer ${apiKey}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
    ];
    await Promise.all(
      starts.map(async (start) => {
        const { socket, closed } = openSocket(port);
        sockets.push(socket);
        socket.write(start);
        // One more byte every 100 ms: always busy, never done.
        const drip = setInterval(
          () => socket.writable && socket.write(start.startsWith('GET') ? 'X-a: b\r\n' : ' '),
          100,
        );
        try {
          const answer = await closed;
          expect(answer).toMatch(/^HTTP\/1\.1 408 /);
        } finally {
          clearInterval(drip);
        }
      }),
    );
  }, 30_000);

  it('accepts a 128-character label fully percent-encoded in the path', async () => {
    const profile = testProfile('http://127.0.0.1:9/token');
    const client = await addClient(engine, profile, { clientId: 'limits' });
    const label = `@${'l'.repeat(127)}`;
    const grant = await seedGrant(
      engine,
      client.id,
      profile,
      { accessToken: 'at-limits', refreshToken: 'rt-limits', expiresIn: 3600 },
      label,
    );
    const encoded = [...label].map((c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).join('');
    expect(encoded).toHaveLength(384);
    const res = await rawRequest(
      '127.0.0.1',
      port,
      `GET /v1/grants/${encoded} HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\nAuthorization: Bearer ${apiKey}\r\n\r\n`,
    );
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ id: grant.id, label });
  });

  it('caps the connections: one over the cap is dropped, and accepted again once a slot frees', async () => {
    // Keep-alive sockets that have been answered and stay open, holding every slot.
    const held = await Promise.all(
      Array.from({ length: MAX_CONNECTIONS }, async () => {
        const { socket } = openSocket(port);
        sockets.push(socket);
        const answered = new Promise<void>((resolve) => socket.once('data', () => resolve()));
        socket.write(`GET /healthz HTTP/1.1\r\nHost: ${host()}\r\n\r\n`);
        await answered;
        return socket;
      }),
    );
    const request = `GET /healthz HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`;
    await expect(rawRequest('127.0.0.1', port, request)).rejects.toThrow();
    held[0]!.destroy();
    await waitFor(
      async () => (await rawRequest('127.0.0.1', port, request).catch(() => undefined))?.status === 200,
      'a freed slot',
      10_000,
      100,
    );
  }, 30_000);
});
