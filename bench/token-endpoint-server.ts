/**
 * A fast OAuth token endpoint for the bench, run as a child process so its CPU is not the harness's:
 * node:http with keep-alive, valid JSON, a new refresh token on every use, optional fixed latency.
 * It does as little as a correct endpoint can, so the client side is what the bench measures.
 * With `--storm-ms N --retry-after S` it answers 429 with `Retry-After: S` for N ms from its first
 * request (a provider's bad minute), then as usual. With `--record` it keeps every request's arrival
 * time and sends them back on { type: 'requests' } as { type: 'requests', times, stormFrom }.
 *   fork(token-endpoint-server.ts, ['--latency', '0']) → { type: 'ready', port }
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { childMain } from './support/processes.js';

export interface RecordedRequests {
  type: 'requests';
  /** Arrival times (epoch ms) of every token request, in order. */
  times: number[];
  /** When the storm began (the first request); unset without one. */
  stormFrom?: number;
}

childMain(async () => {
  const arg = (name: string) => {
    const at = process.argv.indexOf(name);
    return at >= 0 ? Number(process.argv[at + 1]) : 0;
  };
  const latencyMs = arg('--latency');
  const stormMs = arg('--storm-ms');
  const retryAfterSec = arg('--retry-after');
  const record = process.argv.includes('--record');
  const times: number[] = [];
  let stormFrom: number | undefined;
  process.on('message', (m: { type?: string }) => {
    if (m.type !== 'requests') return;
    const answer: RecordedRequests = { type: 'requests', times, ...(stormFrom ? { stormFrom } : {}) };
    process.send?.(answer);
  });
  // One random prefix per process and a counter: unique tokens without a randomBytes call per request.
  const prefix = randomBytes(12).toString('base64url');
  let issued = 0;

  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/token') {
      res.writeHead(404).end();
      return;
    }
    const arrived = Date.now();
    if (record) times.push(arrived);
    stormFrom ??= stormMs > 0 ? arrived : undefined;
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('latin1'));
      const authenticated = req.headers.authorization?.startsWith('Basic ') || form.has('client_id');
      const refreshToken = form.get('refresh_token');
      let status = 200;
      let body: string;
      const headers: Record<string, string> = {};
      if (stormFrom !== undefined && arrived < stormFrom + stormMs) {
        status = 429;
        body = '{"error":"rate_limited"}';
        headers['retry-after'] = String(retryAfterSec);
      } else if (!authenticated) {
        status = 401;
        body = '{"error":"invalid_client"}';
      } else if (form.get('grant_type') !== 'refresh_token' || !refreshToken?.startsWith('rt_')) {
        status = 400;
        body = '{"error":"invalid_grant"}';
      } else {
        issued += 1;
        // Realistic sizes: providers issue tokens of roughly 40 to 120 characters.
        body = JSON.stringify({
          token_type: 'Bearer',
          access_token: `at_${prefix}${issued.toString(36).padStart(48, '0')}`,
          expires_in: 3600,
          refresh_token: `rt_${prefix}${issued.toString(36).padStart(48, '0')}`,
          scope: 'openid offline_access',
        });
      }
      const send = () =>
        res
          .writeHead(status, {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'cache-control': 'no-store',
            ...headers,
          })
          .end(body);
      if (latencyMs > 0) setTimeout(send, latencyMs);
      else send();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  process.send?.({ type: 'ready', port: typeof address === 'object' && address ? address.port : 0 });
});
