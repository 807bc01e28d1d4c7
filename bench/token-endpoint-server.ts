/**
 * A fast OAuth token endpoint for the bench, run as a child process so its CPU is not the harness's:
 * node:http with keep-alive, valid JSON, a new refresh token on every use, optional fixed latency.
 * It does as little as a correct endpoint can, so the client side is what the bench measures.
 *   fork(token-endpoint-server.ts, ['--latency', '0']) → { type: 'ready', port }
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { childMain } from './support/processes.js';

childMain(async () => {
  const latencyArg = process.argv.indexOf('--latency');
  const latencyMs = latencyArg >= 0 ? Number(process.argv[latencyArg + 1]) : 0;
  // One random prefix per process and a counter: unique tokens without a randomBytes call per request.
  const prefix = randomBytes(12).toString('base64url');
  let issued = 0;

  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/token') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('latin1'));
      const authenticated = req.headers.authorization?.startsWith('Basic ') || form.has('client_id');
      const refreshToken = form.get('refresh_token');
      let status = 200;
      let body: string;
      if (!authenticated) {
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
