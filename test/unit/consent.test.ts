import { describe, expect, it } from 'vitest';
import { buildAuthorizationRequest, withOfflineScope } from '../../src/consent/authorization-request.js';
import { codeFromCallback, codeFromPaste, describeAuthorizationError } from '../../src/consent/callback.js';
import { idTokenClaims, resolveIdentity, X_USERS_ME } from '../../src/consent/identity.js';
import { loopbackTarget } from '../../src/consent/loopback-receiver.js';
import { missingRefreshTokenAdvice } from '../../src/consent/seed-grant.js';
import { pkceChallenge } from '../../src/oauth/pkce.js';
import { resolveProvider } from '../../src/oauth/providers.js';

const REDIRECT = 'http://127.0.0.1:53682/callback';

function build(profile: Awaited<ReturnType<typeof resolveProvider>>, scopes: string[]) {
  const req = buildAuthorizationRequest({ profile, clientId: 'client-1', redirectUri: REDIRECT, scopes });
  const url = new URL(req.url);
  return { req, url, params: Object.fromEntries(url.searchParams) };
}

describe('authorization URLs for the presets, field by field', () => {
  it('x: x.com authorize endpoint, offline.access, PKCE S256, no extra parameters', async () => {
    const { req, url, params } = build(await resolveProvider({ kind: 'x' }), ['tweet.read', 'users.read']);
    expect(`${url.origin}${url.pathname}`).toBe('https://x.com/i/oauth2/authorize');
    expect(params).toEqual({
      response_type: 'code',
      client_id: 'client-1',
      redirect_uri: REDIRECT,
      scope: 'tweet.read users.read offline.access',
      state: req.state,
      code_challenge: pkceChallenge(req.codeVerifier),
      code_challenge_method: 'S256',
    });
    expect(req.codeVerifier).toMatch(/^[A-Za-z0-9._~-]{43,128}$/);
    expect(req.state.length).toBeGreaterThanOrEqual(32);
  });

  it('microsoft: the tenant endpoint (v2.0) and offline_access', async () => {
    const profile = await resolveProvider({ kind: 'microsoft', tenant: 'contoso.onmicrosoft.com' });
    const { req, url, params } = build(profile, profile.defaultScopes);
    expect(`${url.origin}${url.pathname}`).toBe(
      'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize',
    );
    expect(params).toEqual({
      response_type: 'code',
      client_id: 'client-1',
      redirect_uri: REDIRECT,
      scope: 'openid profile offline_access User.Read',
      state: req.state,
      code_challenge: pkceChallenge(req.codeVerifier),
      code_challenge_method: 'S256',
    });
  });

  it('google: v2 auth endpoint with access_type=offline and prompt=consent', async () => {
    const { req, url, params } = build(await resolveProvider({ kind: 'google' }), ['openid', 'email']);
    expect(`${url.origin}${url.pathname}`).toBe('https://accounts.google.com/o/oauth2/v2/auth');
    expect(params).toEqual({
      response_type: 'code',
      client_id: 'client-1',
      redirect_uri: REDIRECT,
      scope: 'openid email',
      state: req.state,
      code_challenge: pkceChallenge(req.codeVerifier),
      code_challenge_method: 'S256',
      access_type: 'offline',
      prompt: 'consent',
    });
  });

  it('draws a fresh verifier and state every time', async () => {
    const profile = await resolveProvider({ kind: 'x' });
    const a = build(profile, []).req;
    const b = build(profile, []).req;
    expect(a.codeVerifier).not.toBe(b.codeVerifier);
    expect(a.state).not.toBe(b.state);
  });

  it('adds the offline scope once, keeping the order asked for', async () => {
    const profile = await resolveProvider({ kind: 'microsoft' });
    expect(withOfflineScope(profile, ['User.Read', 'User.Read'])).toEqual(['User.Read', 'offline_access']);
    expect(withOfflineScope(profile, ['offline_access', 'openid'])).toEqual(['offline_access', 'openid']);
  });
});

describe('callback validation', () => {
  const q = (s: string) => new URLSearchParams(s);

  it('returns the code when the state matches', () => {
    expect(codeFromCallback(q('code=abc&state=s1'), 's1')).toBe('abc');
  });

  it('refuses a wrong or missing state before looking at anything else', () => {
    expect(() => codeFromCallback(q('code=abc&state=evil'), 's1')).toThrow(/state that does not match/);
    expect(() => codeFromCallback(q('error=access_denied&state=evil'), 's1')).toThrow(
      /state that does not match/,
    );
    expect(() => codeFromCallback(q('code=abc'), 's1')).toThrow(/no state/);
  });

  it('puts provider errors in plain words', () => {
    expect(() => codeFromCallback(q('error=access_denied&state=s1'), 's1')).toThrow(
      /consent was refused.*\(access_denied\)/,
    );
    expect(describeAuthorizationError('invalid_scope', 'bad\nscope')).toBe(
      'the provider refused the requested scopes: check the scopes enabled for the app (invalid_scope: bad scope)',
    );
    expect(describeAuthorizationError('weird_thing')).toMatch(
      /refused the authorization request \(weird_thing\)/,
    );
  });

  it('refuses a callback with no code or two codes', () => {
    expect(() => codeFromCallback(q('state=s1'), 's1')).toThrow(/no authorization code/);
    expect(() => codeFromCallback(q('state=s1&code=a&code=b'), 's1')).toThrow(/no authorization code/);
  });

  it('accepts a pasted URL, query string or bare code, still checking the state', () => {
    expect(codeFromPaste(`  ${REDIRECT}?code=c1&state=s1\n`, 's1')).toBe('c1');
    expect(codeFromPaste('?code=c2&state=s1', 's1')).toBe('c2');
    expect(codeFromPaste('c3.bare-code', 's1')).toBe('c3.bare-code');
    expect(() => codeFromPaste(`${REDIRECT}?code=c1&state=other`, 's1')).toThrow(/does not match/);
    expect(() => codeFromPaste(`${REDIRECT}?code=c1`, 's1')).toThrow(/no state/);
    expect(() => codeFromPaste('two words', 's1')).toThrow(
      /neither a redirect URL nor an authorization code/,
    );
    expect(() => codeFromPaste('   ', 's1')).toThrow(/nothing was pasted/);
  });

  it('listens only on loopback redirect URIs, on an ephemeral port when none is named', () => {
    expect(loopbackTarget('http://127.0.0.1:8123/cb')).toEqual({
      host: '127.0.0.1',
      port: 8123,
      path: '/cb',
    });
    expect(loopbackTarget('http://[::1]/cb')).toEqual({ host: '::1', port: 0, path: '/cb' });
    expect(() => loopbackTarget('https://example.com/cb')).toThrow(/not an http loopback address.*--manual/);
    expect(() => loopbackTarget('http://192.168.1.5:8000/cb')).toThrow(/not an http loopback address/);
  });
});

describe('identity and advice', () => {
  const jwt = (claims: object) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

  it('reads the id_token claims without trusting odd types', () => {
    expect(idTokenClaims(jwt({ sub: 's', email: 'a@b.c', preferred_username: 7 }))).toEqual({
      sub: 's',
      email: 'a@b.c',
    });
    expect(idTokenClaims('garbage')).toBeUndefined();
  });

  it('names X accounts @username from /2/users/me', async () => {
    const calls: string[] = [];
    const identity = await resolveIdentity(
      await resolveProvider({ kind: 'x' }),
      { accessToken: 'at' },
      async (url) => {
        calls.push(url);
        return { data: { id: '42', username: 'ourbot', name: 'Our Bot' } };
      },
    );
    expect(calls).toEqual([X_USERS_ME]);
    expect(identity).toEqual({ subject: '42', name: '@ourbot' });
  });

  it('names Google and Microsoft accounts from the id_token, without a request', async () => {
    const never = async () => {
      throw new Error('no request expected');
    };
    const google = await resolveProvider({ kind: 'google' });
    expect(
      await resolveIdentity(
        google,
        { accessToken: 'at', idToken: jwt({ sub: '1', email: 'me@gmail.com' }) },
        never,
      ),
    ).toEqual({
      subject: '1',
      name: 'me@gmail.com',
    });
    const ms = await resolveProvider({ kind: 'microsoft' });
    expect(
      await resolveIdentity(
        ms,
        { accessToken: 'at', idToken: jwt({ sub: 'x', preferred_username: 'a@contoso.com' }) },
        never,
      ),
    ).toEqual({ subject: 'x', name: 'a@contoso.com' });
  });

  it('falls back to userinfo when the id_token names no one', async () => {
    const ms = await resolveProvider({ kind: 'microsoft' });
    const identity = await resolveIdentity(
      ms,
      { accessToken: 'at', idToken: jwt({ sub: 'x' }) },
      async (url) => {
        expect(url).toBe('https://graph.microsoft.com/oidc/userinfo');
        return { sub: 'x', email: 'a@contoso.com' };
      },
    );
    expect(identity).toEqual({ subject: 'x', name: 'a@contoso.com' });
  });

  it('says what to add when no refresh token came back', async () => {
    expect(missingRefreshTokenAdvice(await resolveProvider({ kind: 'google' }))).toMatch(
      /access_type=offline and prompt=consent/,
    );
    expect(missingRefreshTokenAdvice(await resolveProvider({ kind: 'x' }))).toMatch(/offline\.access/);
    expect(missingRefreshTokenAdvice(await resolveProvider({ kind: 'microsoft' }))).toMatch(/offline_access/);
  });
});
