import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ClientConfigError, GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import { discoverIssuer, wellKnownUrls } from '../../src/oauth/discovery.js';
import { resolveProvider } from '../../src/oauth/providers.js';

type Route = { status?: number; json?: unknown; body?: string; hang?: boolean };

let server: Server;
let origin: string;
let routes: Map<string, Route>;
let hits: string[];

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const route = routes.get(req.url ?? '');
    if (route?.hang) return;
    if (!route) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(route.status ?? 200, { 'content-type': 'application/json' });
    res.end(route.body ?? JSON.stringify(route.json));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  routes = new Map();
  hits = [];
});

const metadata = (issuer: string, extra: Record<string, unknown> = {}) => ({
  issuer,
  authorization_endpoint: `${origin}/authorize`,
  token_endpoint: `${origin}/token`,
  ...extra,
});

describe('wellKnownUrls', () => {
  it('appends for OpenID and inserts for RFC 8414', () => {
    expect(wellKnownUrls(new URL('https://id.example.com'))).toEqual({
      openid: 'https://id.example.com/.well-known/openid-configuration',
      oauth: 'https://id.example.com/.well-known/oauth-authorization-server',
    });
    expect(wellKnownUrls(new URL('https://id.example.com/tenant/v2.0/'))).toEqual({
      openid: 'https://id.example.com/tenant/v2.0/.well-known/openid-configuration',
      oauth: 'https://id.example.com/.well-known/oauth-authorization-server/tenant/v2.0',
    });
  });
});

describe('discoverIssuer', () => {
  it('reads OpenID Connect discovery', async () => {
    routes.set('/.well-known/openid-configuration', {
      json: metadata(origin, {
        revocation_endpoint: `${origin}/revoke`,
        userinfo_endpoint: `${origin}/me`,
        introspection_endpoint: `${origin}/introspect`,
        jwks_uri: `${origin}/jwks`,
        token_endpoint_auth_methods_supported: ['client_secret_post'],
        code_challenge_methods_supported: ['S256'],
        response_types_supported: ['code'],
      }),
    });
    expect(await discoverIssuer(origin)).toEqual({
      issuer: origin,
      authorizationEndpoint: `${origin}/authorize`,
      tokenEndpoint: `${origin}/token`,
      revocationEndpoint: `${origin}/revoke`,
      userinfoEndpoint: `${origin}/me`,
      introspectionEndpoint: `${origin}/introspect`,
      jwksUri: `${origin}/jwks`,
      tokenEndpointAuthMethodsSupported: ['client_secret_post'],
      codeChallengeMethodsSupported: ['S256'],
    });
  });

  it('falls back to RFC 8414 with the well-known segment inserted before the issuer path', async () => {
    const issuer = `${origin}/tenants/acme`;
    routes.set('/.well-known/oauth-authorization-server/tenants/acme', { json: metadata(issuer) });
    const meta = await discoverIssuer(issuer);
    expect(meta.issuer).toBe(issuer);
    expect(meta.tokenEndpoint).toBe(`${origin}/token`);
    expect(hits).toEqual([
      '/tenants/acme/.well-known/openid-configuration',
      '/.well-known/oauth-authorization-server/tenants/acme',
    ]);
  });

  it('forgives a trailing slash on the configured issuer', async () => {
    routes.set('/.well-known/openid-configuration', { json: metadata(origin) });
    expect((await discoverIssuer(`${origin}/`)).issuer).toBe(origin);
  });

  it('rejects a document that names another issuer', async () => {
    routes.set('/.well-known/openid-configuration', { json: metadata('https://evil.example.com') });
    const err = await discoverIssuer(origin).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GrantkeeperError);
    expect(err).toHaveProperty('code', 'bad_provider');
    expect((err as Error).message).toContain('issuer mismatch');
    expect((err as Error).message).toContain('https://evil.example.com');
  });

  it('uses RFC 8414 when the OpenID document is unusable', async () => {
    routes.set('/.well-known/openid-configuration', { json: metadata('https://evil.example.com') });
    routes.set('/.well-known/oauth-authorization-server', { json: metadata(origin) });
    expect((await discoverIssuer(origin)).issuer).toBe(origin);
  });

  it('explains every attempt when neither document exists', async () => {
    const err = await discoverIssuer(origin).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GrantkeeperError);
    expect(err).toHaveProperty('code', 'bad_provider');
    const message = (err as Error).message;
    expect(message).toContain(`${origin}/.well-known/openid-configuration: HTTP 404`);
    expect(message).toContain(`${origin}/.well-known/oauth-authorization-server: HTTP 404`);
  });

  it('rejects invalid metadata and non-JSON documents', async () => {
    routes.set('/.well-known/openid-configuration', {
      json: { issuer: origin, authorization_endpoint: 'x' },
    });
    routes.set('/.well-known/oauth-authorization-server', { body: '<html>' });
    const message = await discoverIssuer(origin).catch((e: Error) => e.message);
    expect(message).toContain('token_endpoint');
    expect(message).toContain('not JSON');
  });

  it('refuses metadata pointing at plain http off loopback', async () => {
    routes.set('/.well-known/openid-configuration', {
      json: metadata(origin, { token_endpoint: 'http://id.example.com/token' }),
    });
    await expect(discoverIssuer(origin)).rejects.toThrow(
      /token_endpoint http:\/\/id\.example\.com must use https/,
    );
  });

  it('refuses a plain http issuer off loopback without a request', async () => {
    await expect(discoverIssuer('http://id.example.com')).rejects.toBeInstanceOf(ClientConfigError);
  });

  it('times out a silent server', async () => {
    routes.set('/.well-known/openid-configuration', { hang: true });
    routes.set('/.well-known/oauth-authorization-server', { hang: true });
    const message = await discoverIssuer(origin, { timeoutMs: 200 }).catch((e: Error) => e.message);
    expect(message).toContain('no answer within 200 ms');
  });

  it('refuses an oversized document', async () => {
    routes.set('/.well-known/openid-configuration', { body: `{"pad":"${'x'.repeat(300 * 1024)}"}` });
    const message = await discoverIssuer(origin).catch((e: Error) => e.message);
    expect(message).toContain('larger than');
  });

  it('feeds resolveProvider for oidc, key set included', async () => {
    routes.set('/.well-known/openid-configuration', {
      json: metadata(origin, { jwks_uri: `${origin}/jwks` }),
    });
    const p = await resolveProvider({ kind: 'oidc', issuer: origin });
    expect(p).toMatchObject({
      kind: 'oidc',
      issuer: origin,
      tokenEndpoint: `${origin}/token`,
      jwksUri: `${origin}/jwks`,
    });
  });

  it('refuses a key set over plain http off loopback', async () => {
    routes.set('/.well-known/openid-configuration', {
      json: metadata(origin, { jwks_uri: 'http://keys.example.com/jwks' }),
    });
    const message = await discoverIssuer(origin).catch((e: Error) => e.message);
    expect(message).toMatch(/jwks_uri http:\/\/keys\.example\.com must use https/);
  });
});
