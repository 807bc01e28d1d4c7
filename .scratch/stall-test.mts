import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { TokenClient } from '/work/main/src/oauth/token-client.ts';
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
const client = new TokenClient({ timeoutMs: 3000 });
const child = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
const lines = createInterface({ input: child.stdout });
const next = () => new Promise<string>((r) => lines.once('line', r));
const port = Number(await next());
const received = next();
const now = performance.now();
const p = client.refresh({ tokenEndpoint: `http://127.0.0.1:${port}/token`, clientId: 'c', authMethod: 'none' }, 'rt', { window: { abortAt: now + 3000, protectedUntil: now + 60000 } }).then(t => console.log('ok', t.accessToken), e => console.log('err', e.code, e.message));
await received;
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.argv[2] ?? 15000));
await p; child.kill(); await client.close();
