import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_REDIRECT_URI } from '../../src/consent/authorization-request.js';
import { ConsentError } from '../../src/consent/callback.js';
import { loopbackTarget, startLoopbackReceiver } from '../../src/consent/loopback-receiver.js';
import { createPkcePair } from '../../src/oauth/pkce.js';
import { type ProviderProfile, resolveProvider } from '../../src/oauth/providers.js';
import { TokenClient, type TokenEndpointTarget } from '../../src/oauth/token-client.js';
import { TokenEndpointError } from '../../src/oauth/token-errors.js';
import { type OidcServer, startOidcServer } from '../support/oidc-server.js';
import { rawRequest } from '../support/raw-http.js';

const state = () => randomBytes(24).toString('base64url');
const get = (path: string, host: string) =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

/** What a connection to address:port does: 'connected' would mean the receiver listens there. */
function probe(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
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
}

const externalAddresses = () =>
  Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && !a.internal && !a.address.startsWith('fe80:'))
    .map((a) => a!.address);

describe('the seed callback receiver under hostile requests', () => {
  it('defaults to 127.0.0.1 and cannot be reached on any non-loopback address of this machine', async () => {
    expect(loopbackTarget(DEFAULT_REDIRECT_URI).host).toBe('127.0.0.1');
    const receiver = await startLoopbackReceiver('http://127.0.0.1/callback', {
      state: state(),
      timeoutMs: 10_000,
    });
    try {
      const port = Number(new URL(receiver.redirectUri).port);
      expect(await probe('127.0.0.1', port)).toBe('connected');
      const addresses = externalAddresses();
      for (const address of addresses) {
        expect({ address, outcome: await probe(address, port) }).not.toMatchObject({ outcome: 'connected' });
      }
    } finally {
      await receiver.close();
    }
  });

  /** 'pending' while the receiver still waits for its callback. */
  const pending = (callback: Promise<unknown>) =>
    Promise.race([
      callback.then(
        () => 'settled',
        () => 'settled',
      ),
      new Promise((resolve) => setTimeout(() => resolve('pending'), 300)),
    ]);

  it('a forged state is answered 400 whatever the Host header or request target says, and the capture keeps waiting', async () => {
    const ours = state();
    const receiver = await startLoopbackReceiver('http://127.0.0.1/callback', {
      state: ours,
      timeoutMs: 10_000,
    });
    const port = Number(new URL(receiver.redirectUri).port);
    try {
      // Absolute-form target naming another host, and a Host header that claims to be elsewhere.
      const forged = await rawRequest(
        '127.0.0.1',
        port,
        get(`http://evil.example.com/callback?state=${state()}&code=attacker-code`, 'evil.example.com'),
      );
      expect(forged.status).toBe(400);
      expect(forged.body).toMatch(/state that does not match/);
      expect(forged.body).not.toContain('attacker-code');
      expect(forged.body).not.toContain(ours);
      // A forged error must not end the capture either (a page could otherwise cancel any seed).
      const forgedError = await rawRequest(
        '127.0.0.1',
        port,
        get(`/callback?state=${state()}&error=access_denied`, '127.0.0.1'),
      );
      expect(forgedError.status).toBe(400);
      // Nor a forged redirect to another path, which looks like a misregistered redirect URI.
      const elsewhere = await rawRequest(
        '127.0.0.1',
        port,
        get(`/elsewhere?state=${state()}&code=x`, '127.0.0.1'),
      );
      expect(elsewhere.status).toBe(404);
      expect(await pending(receiver.callback)).toBe('pending');
      // The genuine redirect that follows is still the one received.
      const genuine = rawRequest('127.0.0.1', port, get(`/callback?state=${ours}&code=real`, '127.0.0.1'));
      const received = await receiver.callback;
      expect(received.code).toBe('real');
      await received.reply({ ok: true, message: 'stored' });
      expect((await genuine).status).toBe(200);
    } finally {
      await receiver.close();
    }
  });

  it('no state, an empty state or a near miss of ours is answered 400 and ignored; our state with an error ends it', async () => {
    const ours = state();
    const receiver = await startLoopbackReceiver('http://127.0.0.1/callback', {
      state: ours,
      timeoutMs: 10_000,
    });
    receiver.callback.catch(() => {});
    const port = Number(new URL(receiver.redirectUri).port);
    try {
      for (const query of [
        'code=x',
        'state=&code=x',
        `state=${ours.slice(0, -1)}&code=x`,
        `state=${ours}x&code=x`,
        `STATE=${ours}&code=x`,
      ]) {
        const res = await rawRequest('127.0.0.1', port, get(`/callback?${query}`, `127.0.0.1:${port}`));
        expect({ query, status: res.status }).toEqual({ query, status: 400 });
      }
      expect(await pending(receiver.callback)).toBe('pending');
      const denied = await rawRequest(
        '127.0.0.1',
        port,
        get(`/callback?state=${ours}&error=access_denied`, '127.0.0.1'),
      );
      expect(denied.status).toBe(400);
      expect(denied.body).toMatch(/consent was refused/);
      const refused = await receiver.callback.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(ConsentError);
      expect((refused as Error).message).toMatch(/consent was refused.*access_denied/);
    } finally {
      await receiver.close();
    }
  });

  it('a replayed callback is turned away while listening and refused once closed', async () => {
    const ours = state();
    const receiver = await startLoopbackReceiver('http://127.0.0.1/callback', {
      state: ours,
      timeoutMs: 10_000,
    });
    const port = Number(new URL(receiver.redirectUri).port);
    const path = `/callback?state=${ours}&code=once`;
    const first = rawRequest('127.0.0.1', port, get(path, 'evil.example.com'));
    const received = await receiver.callback;
    expect(received.code).toBe('once');
    const replay = await rawRequest('127.0.0.1', port, get(path, '127.0.0.1'));
    expect(replay.status).toBe(409);
    await received.reply({ ok: true, message: 'stored' });
    expect((await first).status).toBe(200);
    await receiver.close();
    await expect(rawRequest('127.0.0.1', port, get(path, '127.0.0.1'))).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
  });
});

describe('a replayed authorization code at oidc-provider', () => {
  const REDIRECT = 'http://127.0.0.1:53682/callback';
  let oidc: OidcServer;
  let profile: ProviderProfile;
  let target: TokenEndpointTarget;
  const tokenClient = new TokenClient({ timeoutMs: 5000 });

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        { clientId: 'replay', clientSecret: `s-${randomBytes(8).toString('hex')}`, redirectUris: [REDIRECT] },
      ],
    });
    profile = await resolveProvider({ kind: 'oidc', issuer: oidc.issuer });
    const c = oidc.clients[0]!;
    target = {
      tokenEndpoint: profile.tokenEndpoint,
      clientId: c.clientId,
      clientSecret: c.clientSecret!,
      authMethod: 'client_secret_basic',
    };
  });

  afterAll(async () => {
    await tokenClient.close();
    await oidc?.close();
  });

  it('is invalid_grant (needs re-consent) and the error never names the code or verifier', async () => {
    const pkce = createPkcePair();
    const authorize = new URL(profile.authorizationEndpoint);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: target.clientId,
      redirect_uri: REDIRECT,
      scope: 'openid offline_access',
      prompt: 'consent',
      state: state(),
      code_challenge: pkce.challenge,
      code_challenge_method: 'S256',
    }).toString();
    const callback = await oidc.driveConsent(authorize.toString());
    const code = callback.searchParams.get('code') ?? '';
    const exchange = () =>
      tokenClient.exchangeCode(target, { code, redirectUri: REDIRECT, codeVerifier: pkce.verifier });
    const first = await exchange();
    expect(first.accessToken).toBeTruthy();
    const err = await exchange().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TokenEndpointError);
    expect(err).toMatchObject({ code: 'invalid_grant', outcome: 'needs_reconsent' });
    const text = `${(err as Error).message} ${JSON.stringify(err)}`;
    for (const s of [code, pkce.verifier, target.clientSecret!, first.accessToken])
      expect(text).not.toContain(s);
  });
});
