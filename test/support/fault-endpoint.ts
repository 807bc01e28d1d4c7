import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Behaviour =
  | {
      type: 'rotate';
      expiresIn?: number | string | null /* null = omit */;
      omitRefreshToken?: boolean;
      latencyMs?: number;
      /** Rotates as usual but answers an access token carrying CR LF (a protocol error). */
      corruptAccessToken?: boolean;
      /** Also states the refresh token's own lifetime (`refresh_token_expires_in`, seconds). */
      refreshTokenExpiresIn?: number;
    }
  | {
      type: 'status';
      status: number;
      latencyMs?: number;
      json?: unknown;
      body?: string;
      contentType?: string;
      headers?: Record<string, string>;
    }
  | { type: 'hang' }
  | { type: 'huge'; bytes: number }
  | { type: 'truncated' };

export interface RecordedRequest {
  at: number;
  headers: Record<string, string | string[] | undefined>;
  /** The last value of each parameter; `params` has them all (a repeated `resource`). */
  form: Record<string, string>;
  params: URLSearchParams;
  path: string;
}

export interface FaultEndpoint {
  /** Full token endpoint URL (path /token). */
  url: string;
  requests: RecordedRequest[];
  /** Spent refresh tokens presented again; each one revokes its grant, as X and Microsoft do. */
  reuseDetections: number;
  /** Bytes 'huge' actually wrote before the client went away. */
  hugeBytesWritten: number;
  /** One-shot behaviours, consumed in order, one per request; then the default. */
  push(...b: Behaviour[]): void;
  setDefault(b: Behaviour): void;
  /**
   * From now on, refuse with 401 invalid_client every request whose client secret (HTTP Basic or
   * `client_secret` in the form) is not one of these; null accepts any. Refusals consume no behaviour.
   */
  acceptClientSecrets(secrets: readonly string[] | null): void;
  /** A grant whose refresh token the rotating mode accepts. */
  mintGrant(): { accessToken: string; refreshToken: string };
  isAccessTokenValid(t: string): boolean;
  /** Every access and refresh token handed out so far, for leak checks. */
  issuedTokens(): string[];
  close(): Promise<void>;
}

interface Grant {
  revoked: boolean;
}

const token = (kind: 'at' | 'rt') => `gk-test-${kind}-${randomBytes(16).toString('hex')}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A token endpoint on loopback that behaves like a rotating provider by default and injects one
 * fault per pushed behaviour. Tokens share a greppable prefix so tests can prove none leaked into logs.
 */
export async function startFaultEndpoint(): Promise<FaultEndpoint> {
  const queue: Behaviour[] = [];
  let fallback: Behaviour = { type: 'rotate', expiresIn: 3600 };
  const refreshTokens = new Map<string, { grant: Grant; spent: boolean }>();
  const accessTokens = new Map<string, { grant: Grant; expiresAt: number }>();
  const usedCodes = new Set<string>();
  let accepted: readonly string[] | null = null;
  const presentedSecret = (req: IncomingMessage, form: Record<string, string>) => {
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    if (!basic?.[1]) return form.client_secret;
    const pair = Buffer.from(basic[1], 'base64').toString('utf8');
    return decodeURIComponent(pair.slice(pair.indexOf(':') + 1).replaceAll('+', ' '));
  };

  const issue = (grant: Grant, expiresIn: number | string | null, withRefresh: boolean) => {
    const accessToken = token('at');
    const seconds = expiresIn === null ? Number.POSITIVE_INFINITY : Number(expiresIn);
    accessTokens.set(accessToken, { grant, expiresAt: Date.now() + seconds * 1000 });
    const body: Record<string, unknown> = { access_token: accessToken, token_type: 'bearer' };
    if (expiresIn !== null) body.expires_in = expiresIn;
    if (withRefresh) {
      const refreshToken = token('rt');
      refreshTokens.set(refreshToken, { grant, spent: false });
      body.refresh_token = refreshToken;
    }
    return body;
  };

  const sendJson = (res: ServerResponse, status: number, json: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(json));
  };
  const invalidGrant = (res: ServerResponse, description: string) =>
    sendJson(res, 400, { error: 'invalid_grant', error_description: description });

  const rotate = async (
    b: Extract<Behaviour, { type: 'rotate' }>,
    form: Record<string, string>,
    res: ServerResponse,
  ) => {
    if (b.latencyMs) await sleep(b.latencyMs);
    const expiresIn = b.expiresIn === undefined ? 3600 : b.expiresIn;
    if (form.grant_type === 'authorization_code') {
      // Any code works once: enough for exchangeCode tests without a consent screen.
      if (!form.code || usedCodes.has(form.code)) return invalidGrant(res, 'authorization code is invalid');
      usedCodes.add(form.code);
      const body = issue({ revoked: false }, expiresIn, true);
      if (b.refreshTokenExpiresIn !== undefined) body.refresh_token_expires_in = b.refreshTokenExpiresIn;
      return sendJson(res, 200, body);
    }
    if (form.grant_type !== 'refresh_token') return sendJson(res, 400, { error: 'unsupported_grant_type' });
    const entry = refreshTokens.get(form.refresh_token ?? '');
    if (!entry || entry.grant.revoked) return invalidGrant(res, 'refresh token is invalid');
    if (entry.spent) {
      endpoint.reuseDetections++;
      entry.grant.revoked = true;
      return invalidGrant(res, 'refresh token was already used');
    }
    if (!b.omitRefreshToken) entry.spent = true;
    const body = issue(entry.grant, expiresIn, !b.omitRefreshToken);
    if (b.corruptAccessToken) body.access_token = `${body.access_token}\r\nX-Injected: 1`;
    if (b.refreshTokenExpiresIn !== undefined) body.refresh_token_expires_in = b.refreshTokenExpiresIn;
    sendJson(res, 200, body);
  };

  const huge = (bytes: number, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let left = bytes;
    const pump = () => {
      while (left > 0 && !res.destroyed) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        endpoint.hugeBytesWritten += piece.length;
        if (!res.write(piece)) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end();
    };
    pump();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    const form = Object.fromEntries(params);
    endpoint.requests.push({
      at: Date.now(),
      headers: { ...req.headers },
      form,
      params,
      path: req.url ?? '',
    });
    if (accepted && !accepted.includes(presentedSecret(req, form) ?? '')) {
      return sendJson(res, 401, {
        error: 'invalid_client',
        error_description: 'client authentication failed',
      });
    }
    const b = queue.shift() ?? fallback;
    switch (b.type) {
      case 'rotate':
        return rotate(b, form, res);
      case 'status': {
        if (b.latencyMs) await sleep(b.latencyMs);
        const contentType = b.contentType ?? (b.json === undefined ? 'text/plain' : 'application/json');
        res.writeHead(b.status, { 'content-type': contentType, ...b.headers });
        return void res.end(b.json === undefined ? (b.body ?? '') : JSON.stringify(b.json));
      }
      case 'hang':
        return;
      case 'huge':
        return huge(b.bytes, res);
      case 'truncated': {
        const full = JSON.stringify(issue({ revoked: false }, 3600, true));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(full.length) });
        // Half the promised body, then the connection drops: a reset mid-response.
        res.write(full.slice(0, full.length >> 1), () => res.socket?.destroy());
        return;
      }
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.destroy(err instanceof Error ? err : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const endpoint: FaultEndpoint = {
    url: `http://127.0.0.1:${port}/token`,
    requests: [],
    reuseDetections: 0,
    hugeBytesWritten: 0,
    push: (...b) => {
      queue.push(...b);
    },
    setDefault: (b) => {
      fallback = b;
    },
    acceptClientSecrets: (secrets) => {
      accepted = secrets;
    },
    mintGrant: () => {
      const grant: Grant = { revoked: false };
      const body = issue(grant, 3600, true);
      return { accessToken: body.access_token as string, refreshToken: body.refresh_token as string };
    },
    isAccessTokenValid: (t) => {
      const entry = accessTokens.get(t);
      return entry !== undefined && !entry.grant.revoked && entry.expiresAt > Date.now();
    },
    issuedTokens: () => [...accessTokens.keys(), ...refreshTokens.keys()],
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Hanging requests hold their sockets open; close() alone would wait for them forever.
        server.closeAllConnections();
      }),
  };
  return endpoint;
}
