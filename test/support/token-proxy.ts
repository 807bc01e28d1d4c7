import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetch } from 'undici';

export type TokenRewrite = (
  body: Record<string, unknown>,
) => Record<string, unknown> | Promise<Record<string, unknown>>;

export interface TokenProxy {
  /** Point a client's token endpoint here. */
  url: string;
  /** How the next answers are changed on their way back; undefined passes them through. */
  rewrite: TokenRewrite | undefined;
  /** Every id_token the real server issued, before any rewrite. */
  idTokens: string[];
  /** Answers a request itself instead of forwarding it, when it returns an answer. */
  intercept: ((form: URLSearchParams) => { status: number; json: unknown } | undefined) | undefined;
  /** Every request's form and arrival time (ms), in order. */
  requests: Array<{ at: number; form: URLSearchParams }>;
  close(): Promise<void>;
}

/**
 * A token endpoint in front of the real one (an attacker on the path, or a broken server): requests
 * go upstream as they are, successful JSON answers come back through `rewrite`.
 */
export async function startTokenProxy(upstream: string): Promise<TokenProxy> {
  const proxy: TokenProxy = {
    url: '',
    rewrite: undefined,
    idTokens: [],
    intercept: undefined,
    requests: [],
    close: async () => {},
  };
  const server = createServer((req, res) => {
    void forward(req)
      .then(async ({ status, body }) => {
        let out = body;
        if (status === 200) {
          const json = JSON.parse(body) as Record<string, unknown>;
          if (typeof json.id_token === 'string') proxy.idTokens.push(json.id_token);
          if (proxy.rewrite) out = JSON.stringify(await proxy.rewrite(json));
        }
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(out);
      })
      .catch((err: unknown) => {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'proxy_failed', error_description: String(err) }));
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });

  async function forward(req: IncomingMessage): Promise<{ status: number; body: string }> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    proxy.requests.push({ at: Date.now(), form });
    const answer = proxy.intercept?.(form);
    if (answer) return { status: answer.status, body: JSON.stringify(answer.json) };
    const headers: Record<string, string> = {};
    for (const name of ['authorization', 'content-type', 'accept', 'dpop']) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const res = await fetch(upstream, { method: 'POST', headers, body: Buffer.concat(chunks) });
    return { status: res.status, body: await res.text() };
  }
  return proxy;
}
