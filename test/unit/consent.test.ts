import { describe, expect, it } from 'vitest';
import { configClientSchema } from '../../src/config/config-schema.js';
import { buildAuthorizationRequest, withOfflineScope } from '../../src/consent/authorization-request.js';
import { codeFromCallback, codeFromPaste, describeAuthorizationError } from '../../src/consent/callback.js';
import { deriveLabel, labelProblem, takeoverProblem } from '../../src/consent/grant-label.js';
import { IdTokenError } from '../../src/consent/id-token.js';
import { resolveIdentity, X_USERS_ME } from '../../src/consent/identity.js';
import { loopbackTarget } from '../../src/consent/loopback-receiver.js';
import { missingRefreshTokenAdvice } from '../../src/consent/seed-grant.js';
import {
  addAuthorizeParam,
  authorizeParamsSchema,
  FLOW_OWNED_PARAMS,
} from '../../src/oauth/authorize-params.js';
import { pkceChallenge } from '../../src/oauth/pkce.js';
import { resolveProvider } from '../../src/oauth/providers.js';
import { GRANT_ID_PATTERN, newId } from '../../src/store/ids.js';
import { idTokenSigner } from '../support/id-tokens.js';

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
      nonce: req.nonce,
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
      nonce: req.nonce,
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

describe('nonce and client authorization parameters', () => {
  it('sends a fresh nonce whenever openid is requested, and none without it', async () => {
    const oidc = await resolveProvider({
      kind: 'oidc',
      endpoints: { authorization: 'https://id.example.com/auth', token: 'https://id.example.com/token' },
    });
    const a = build(oidc, ['openid']);
    const b = build(oidc, ['openid']);
    expect(a.req.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.params.nonce).toBe(a.req.nonce);
    expect(b.req.nonce).not.toBe(a.req.nonce);
    const x = build(await resolveProvider({ kind: 'x' }), ['users.read']);
    expect(x.req.nonce).toBeUndefined();
    expect(x.url.searchParams.has('nonce')).toBe(false);
  });

  it("merges the client's parameters over the preset's; the flow's own always win", async () => {
    const google = await resolveProvider({ kind: 'google' });
    const req = buildAuthorizationRequest({
      profile: google,
      clientId: 'client-1',
      redirectUri: REDIRECT,
      scopes: ['openid'],
      // A damaged or hand-edited row must still not replace state or PKCE.
      authorizeParams: {
        hd: 'example.com',
        prompt: 'select_account consent',
        state: 'x',
        code_challenge: 'y',
      },
    });
    const params = new URL(req.url).searchParams;
    expect(params.get('hd')).toBe('example.com');
    expect(params.get('prompt')).toBe('select_account consent');
    expect(params.get('access_type')).toBe('offline');
    expect(params.get('state')).toBe(req.state);
    expect(params.get('code_challenge')).toBe(pkceChallenge(req.codeVerifier));
    expect(params.getAll('state')).toHaveLength(1);
  });

  it('parses name=value flags and refuses what the flow owns, bad names, unprintable values and repeats', () => {
    expect(addAuthorizeParam('login_hint=ops@example.com')).toEqual({ login_hint: 'ops@example.com' });
    expect(addAuthorizeParam('audience=https://api.example.com/?a=b', { hd: 'example.com' })).toEqual({
      hd: 'example.com',
      audience: 'https://api.example.com/?a=b',
    });
    for (const owned of FLOW_OWNED_PARAMS) {
      expect(() => addAuthorizeParam(`${owned}=x`)).toThrow(/set by grantkeeper itself/);
    }
    expect(() => addAuthorizeParam('STATE=x')).toThrow(/set by grantkeeper itself/);
    expect(() => addAuthorizeParam('login_hint')).toThrow(/expected name=value/);
    expect(() => addAuthorizeParam('=x')).toThrow(/expected name=value/);
    expect(() => addAuthorizeParam('a b=x')).toThrow(/names are letters/);
    expect(() => addAuthorizeParam('hd=')).toThrow(/printable/);
    expect(() => addAuthorizeParam('hd=a\nb')).toThrow(/printable/);
    expect(() => addAuthorizeParam('hd=a\u202eb')).toThrow(/printable/);
    expect(() => addAuthorizeParam('hd=b', { hd: 'a' })).toThrow(/given twice/);
  });

  it('the same rules hold for a config-file client', () => {
    const base = { name: 'c', provider: 'google', clientId: 'id' };
    expect(
      configClientSchema.parse({ ...base, authorizeParams: { hd: 'example.com' } }).authorizeParams,
    ).toEqual({
      hd: 'example.com',
    });
    const bad = configClientSchema.safeParse({ ...base, authorizeParams: { redirect_uri: 'https://evil' } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toMatch(/redirect_uri is set by grantkeeper itself/);
    expect(configClientSchema.safeParse({ ...base, authorizeParams: { hd: 7 } }).success).toBe(false);
    expect(authorizeParamsSchema.safeParse({ nonce: 'x' }).success).toBe(false);
  });
});

describe('grant labels', () => {
  it('refuses labels shaped like grant ids, which newId always yields', () => {
    for (let i = 0; i < 200; i++) expect(newId('g')).toMatch(GRANT_ID_PATTERN);
    expect(labelProblem('g_AAAAAAAAAAAA')).toMatch(/shape of a grant id/);
    expect(labelProblem('g_-_-_-_-_-_-_')).toMatch(/shape of a grant id/);
    expect(labelProblem('g_AAAAAAAAAAA')).toBeUndefined();
    expect(labelProblem('g_AAAAAAAAAAAAA')).toBeUndefined();
    expect(labelProblem('@ourbot')).toBeUndefined();
    expect(labelProblem('bad label')).toMatch(/not valid/);
  });

  it('never derives an id-shaped label, even from a client name and subject that would make one', () => {
    expect(deriveLabel({ name: 'g_AAAAAAAAAAAA', subject: 'AAAAAA' }, 'g_AAAAA')).toMatch(
      /^g_AAAAA-[0-9a-f]{8}$/,
    );
    expect(deriveLabel({ name: 'me@example.com' }, 'x')).toBe('me@example.com');
    expect(deriveLabel({ name: 'not a label', subject: '42' }, 'x')).toBe('x-42');
    expect(deriveLabel({}, 'x')).toMatch(/^x-[0-9a-f]{8}$/);
    for (let i = 0; i < 50; i++) expect(labelProblem(deriveLabel({}, 'g_A'))).toBeUndefined();
  });

  it('lets a derived label replace only the same account of the same client', () => {
    const existing = {
      id: 'g_AAAAAAAAAAAA',
      clientRef: 'c_1',
      subject: 'alice',
      kind: 'authorization_code' as const,
    };
    expect(takeoverProblem('alice', existing, { clientRef: 'c_1', subject: 'alice' })).toBeUndefined();
    expect(takeoverProblem('alice', existing, { clientRef: 'c_1', subject: 'mallory' })).toMatch(
      /belongs to another account; nothing was stored.*--label/,
    );
    expect(takeoverProblem('alice', existing, { clientRef: 'c_1' })).toMatch(/did not say which account/);
    expect(
      takeoverProblem('alice', { ...existing, subject: null }, { clientRef: 'c_1', subject: 'alice' }),
    ).toMatch(/stored without an account id/);
    expect(takeoverProblem('alice', existing, { clientRef: 'c_2', subject: 'alice' })).toMatch(
      /belongs to another client/,
    );
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
  it('names X accounts @username from /2/users/me', async () => {
    const calls: string[] = [];
    const identity = await resolveIdentity(
      await resolveProvider({ kind: 'x' }),
      { accessToken: 'at' },
      {
        idToken: { clientId: 'client-1' },
        get: async (url) => {
          calls.push(url);
          return { data: { id: '42', username: 'ourbot', name: 'Our Bot' } };
        },
      },
    );
    expect(calls).toEqual([X_USERS_ME]);
    expect(identity).toEqual({ subject: '42', name: '@ourbot' });
  });

  const never = async () => {
    throw new Error('no request expected');
  };
  const MS_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';

  it('names Google and Microsoft accounts from the validated id_token, without a request', async () => {
    const signer = await idTokenSigner();
    const google = await resolveProvider({ kind: 'google' });
    const googleToken = await signer.sign({
      iss: 'https://accounts.google.com',
      aud: 'client-1',
      sub: '1',
      email: 'me@gmail.com',
      nonce: 'n-1',
    });
    expect(
      await resolveIdentity(
        google,
        { accessToken: 'at', idToken: googleToken },
        { idToken: { clientId: 'client-1', nonce: 'n-1' }, get: never, keys: signer.keys },
      ),
    ).toEqual({ subject: '1', name: 'me@gmail.com' });
    // The common endpoint: the issuer is the account's own tenant.
    const ms = await resolveProvider({ kind: 'microsoft' });
    const msToken = await signer.sign({
      iss: `https://login.microsoftonline.com/${MS_TENANT}/v2.0`,
      tid: MS_TENANT,
      aud: 'client-1',
      sub: 'x',
      preferred_username: 'a@contoso.com',
      nonce: 'n-2',
    });
    expect(
      await resolveIdentity(
        ms,
        { accessToken: 'at', idToken: msToken },
        { idToken: { clientId: 'client-1', nonce: 'n-2' }, get: never, keys: signer.keys },
      ),
    ).toEqual({ subject: 'x', name: 'a@contoso.com' });
  });

  it('an id_token that fails validation names no one: IdTokenError, and userinfo is not asked', async () => {
    const signer = await idTokenSigner();
    const other = await idTokenSigner();
    const google = await resolveProvider({ kind: 'google' });
    const forged = await other.sign({
      iss: 'https://accounts.google.com',
      aud: 'client-1',
      sub: '1',
      nonce: 'n',
    });
    await expect(
      resolveIdentity(
        google,
        { accessToken: 'at', idToken: forged },
        { idToken: { clientId: 'client-1', nonce: 'n' }, get: never, keys: signer.keys },
      ),
    ).rejects.toBeInstanceOf(IdTokenError);
  });

  it('never reads the claims of an id_token it cannot validate (no key set): userinfo names the account', async () => {
    const unsigned = `e30.${Buffer.from(JSON.stringify({ sub: 'victim', preferred_username: 'victim' })).toString('base64url')}.sig`;
    const { jwksUri: _, ...legacy } = await resolveProvider({ kind: 'microsoft' });
    const identity = await resolveIdentity(
      legacy,
      { accessToken: 'at', idToken: unsigned },
      {
        idToken: { clientId: 'client-1' },
        get: async (url) => {
          expect(url).toBe('https://graph.microsoft.com/oidc/userinfo');
          return { sub: 'x', email: 'a@contoso.com' };
        },
      },
    );
    expect(identity).toEqual({ subject: 'x', name: 'a@contoso.com' });
    // And with no userinfo either: no name at all, rather than the id_token's.
    const { userinfoEndpoint: __, ...bare } = legacy;
    expect(
      await resolveIdentity(
        bare,
        { accessToken: 'at', idToken: unsigned },
        { idToken: { clientId: 'c' }, get: never },
      ),
    ).toEqual({});
  });

  it('falls back to userinfo when the id_token names no one, only for the same subject', async () => {
    const signer = await idTokenSigner();
    const ms = await resolveProvider({ kind: 'microsoft', tenant: MS_TENANT });
    const idToken = await signer.sign({
      iss: `https://login.microsoftonline.com/${MS_TENANT}/v2.0`,
      aud: 'client-1',
      sub: 'x',
    });
    const resolve = (userinfo: object) =>
      resolveIdentity(
        ms,
        { accessToken: 'at', idToken },
        {
          idToken: { clientId: 'client-1' },
          keys: signer.keys,
          get: async (url) => {
            expect(url).toBe('https://graph.microsoft.com/oidc/userinfo');
            return userinfo;
          },
        },
      );
    expect(await resolve({ sub: 'x', email: 'a@contoso.com' })).toEqual({
      subject: 'x',
      name: 'a@contoso.com',
    });
    // OIDC Core §5.3.2: userinfo about someone else is not used.
    expect(await resolve({ sub: 'y', email: 'victim@contoso.com' })).toEqual({ subject: 'x' });
  });

  it('says what to add when no refresh token came back', async () => {
    expect(missingRefreshTokenAdvice(await resolveProvider({ kind: 'google' }))).toMatch(
      /access_type=offline and prompt=consent/,
    );
    expect(missingRefreshTokenAdvice(await resolveProvider({ kind: 'x' }))).toMatch(/offline\.access/);
    expect(missingRefreshTokenAdvice(await resolveProvider({ kind: 'microsoft' }))).toMatch(/offline_access/);
  });
});
