import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, importJWK, type JWTPayload, jwtVerify } from 'jose';

/**
 * A JWT-bearer token endpoint (RFC 7523 §2.1) on loopback that checks an assertion the way Google's
 * does: signature by the registered key named in `kid`, `iss` the service account, `aud` this token
 * endpoint, `iat` not in the future, `exp` present and at most an hour after `iat`, and (stricter
 * than Google) every `jti` used once. It answers `invalid_grant` otherwise.
 */
export interface JwtBearerServer {
  tokenEndpoint: string;
  /** Assertions accepted, with their claims and what the form carried besides. */
  accepted: Array<{ claims: JWTPayload; form: Record<string, string> }>;
  /** Refusals by reason (bad_signature, audience, replayed_jti …). */
  refused: Record<string, number>;
  isValid(accessToken: string): boolean;
  close(): Promise<void>;
}

export async function startJwtBearerServer(opts: {
  /** The service account's email: the only `iss` accepted. */
  issuer: string;
  /** Public keys by kid. */
  keys: Record<string, Record<string, unknown>>;
  accessTokenTtlSec?: number;
}): Promise<JwtBearerServer> {
  const ttl = opts.accessTokenTtlSec ?? 3600;
  const seenJtis = new Set<string>();
  const tokens = new Map<string, number>();
  const server: JwtBearerServer = {
    tokenEndpoint: '',
    accepted: [],
    refused: {},
    isValid: () => false,
    close: async () => {},
  };
  const refuse = (reason: string) => {
    server.refused[reason] = (server.refused[reason] ?? 0) + 1;
    return {
      status: 400,
      body: { error: 'invalid_grant', error_description: `assertion refused: ${reason}` },
    };
  };

  async function answer(form: Record<string, string>): Promise<{ status: number; body: unknown }> {
    if (form.grant_type !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return { status: 400, body: { error: 'unsupported_grant_type' } };
    }
    const assertion = form.assertion ?? '';
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(assertion).kid;
    } catch {
      return refuse('malformed');
    }
    const jwk = kid === undefined ? undefined : opts.keys[kid];
    if (!jwk) return refuse('unknown_kid');
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(assertion, await importJWK(jwk, 'RS256'), {
        algorithms: ['RS256'],
        issuer: opts.issuer,
        audience: server.tokenEndpoint,
        requiredClaims: ['iat', 'exp', 'jti'],
      }));
    } catch (err) {
      return refuse((err as { code?: string }).code ?? 'bad_signature');
    }
    const now = Math.floor(Date.now() / 1000);
    if ((claims.iat ?? 0) > now + 5) return refuse('iat_in_future');
    if ((claims.exp ?? 0) - (claims.iat ?? 0) > 3600) return refuse('exp_too_far');
    if (seenJtis.has(claims.jti ?? '')) return refuse('replayed_jti');
    seenJtis.add(claims.jti ?? '');
    server.accepted.push({ claims, form });
    const accessToken = `gk-test-at-${randomBytes(16).toString('hex')}`;
    tokens.set(accessToken, Date.now() + ttl * 1000);
    return { status: 200, body: { access_token: accessToken, token_type: 'Bearer', expires_in: ttl } };
  }

  const http = createServer((req, res) => {
    void readForm(req)
      .then(answer)
      .then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(body));
      });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  server.tokenEndpoint = `http://127.0.0.1:${(http.address() as AddressInfo).port}/token`;
  server.isValid = (token) => (tokens.get(token) ?? 0) > Date.now();
  server.close = () =>
    new Promise<void>((resolve) => {
      http.close(() => resolve());
      http.closeAllConnections();
    });
  return server;
}

async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}
