import { describe, expect, it, vi } from 'vitest';
import { ClientConfigError, GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import type { IssuerMetadata } from '../../src/oauth/discovery.js';
import { parseStoredProfile, resolveProvider } from '../../src/oauth/providers.js';

const DAY = 86_400;

describe('x preset', () => {
  it('has the documented endpoints and parameters', async () => {
    const p = await resolveProvider({ kind: 'x' });
    expect(p.kind).toBe('x');
    expect(p.issuer).toBeUndefined();
    expect(p.authorizationEndpoint).toBe('https://x.com/i/oauth2/authorize');
    expect(p.tokenEndpoint).toBe('https://api.x.com/2/oauth2/token');
    expect(p.revocationEndpoint).toBe('https://api.x.com/2/oauth2/revoke');
    expect(p.userinfoEndpoint).toBeUndefined();
    expect(p.jwksUri).toBeUndefined();
    expect(p.defaultScopes).toEqual(['tweet.read', 'users.read', 'offline.access']);
    expect(p.offlineScope).toBe('offline.access');
    expect(p.extraAuthorizeParams).toEqual({});
    expect(p.confidentialAuthMethod).toBe('client_secret_basic');
    expect(p.rotatesRefreshTokens).toBe(true);
    expect(p.defaultAccessLifetimeSec).toBe(7200);
    expect(p.refreshIdleLimitSec).toBe(180 * DAY);
    expect(p.keepAliveIntervalSec).toBeLessThanOrEqual(p.refreshIdleLimitSec / 4);
  });

  it('hands out a fresh object each time', async () => {
    const a = await resolveProvider({ kind: 'x' });
    a.defaultScopes.push('like.write');
    expect((await resolveProvider({ kind: 'x' })).defaultScopes).toHaveLength(3);
  });
});

describe('microsoft preset', () => {
  it('defaults to the common tenant', async () => {
    const p = await resolveProvider({ kind: 'microsoft' });
    expect(p.kind).toBe('microsoft');
    expect(p.issuer).toBeUndefined();
    expect(p.authorizationEndpoint).toBe('https://login.microsoftonline.com/common/oauth2/v2.0/authorize');
    expect(p.tokenEndpoint).toBe('https://login.microsoftonline.com/common/oauth2/v2.0/token');
    expect(p.revocationEndpoint).toBeUndefined();
    expect(p.userinfoEndpoint).toBe('https://graph.microsoft.com/oidc/userinfo');
    expect(p.jwksUri).toBe('https://login.microsoftonline.com/common/discovery/v2.0/keys');
    expect(p.defaultScopes).toEqual(['openid', 'profile', 'offline_access', 'User.Read']);
    expect(p.offlineScope).toBe('offline_access');
    expect(p.extraAuthorizeParams).toEqual({});
    expect(p.confidentialAuthMethod).toBe('client_secret_post');
    expect(p.rotatesRefreshTokens).toBe(true);
    expect(p.defaultAccessLifetimeSec).toBe(3600);
    expect(p.refreshIdleLimitSec).toBe(90 * DAY);
    expect(p.keepAliveIntervalSec).toBeLessThanOrEqual(p.refreshIdleLimitSec / 4);
  });

  it('accepts a tenant GUID and fixes the issuer from it', async () => {
    const tenant = '72f988bf-86f1-41af-91ab-2d7cd011db47';
    const p = await resolveProvider({ kind: 'microsoft', tenant });
    expect(p.tokenEndpoint).toBe(`https://login.microsoftonline.com/${tenant}/oauth2/v2.0/token`);
    expect(p.issuer).toBe(`https://login.microsoftonline.com/${tenant}/v2.0`);
    expect(p.jwksUri).toBe(`https://login.microsoftonline.com/${tenant}/discovery/v2.0/keys`);
  });

  it.each(['organizations', 'consumers', 'contoso.onmicrosoft.com', 'Contoso.COM'])(
    'accepts tenant %s',
    async (t) => {
      const p = await resolveProvider({ kind: 'microsoft', tenant: t });
      expect(p.authorizationEndpoint).toBe(`https://login.microsoftonline.com/${t}/oauth2/v2.0/authorize`);
      expect(p.issuer).toBeUndefined();
      // The keys of the alias sign for every tenant; the issuer is checked per account (tid).
      expect(p.jwksUri).toBe(`https://login.microsoftonline.com/${t}/discovery/v2.0/keys`);
    },
  );

  it.each([
    '',
    'common/../evil',
    'a/b',
    'contoso.com?x=1',
    'contoso.com#frag',
    '-contoso',
    'contoso..com',
    'con toso',
    '%2e%2e',
    'x'.repeat(300),
  ])('refuses tenant %j', async (tenant) => {
    await expect(resolveProvider({ kind: 'microsoft', tenant })).rejects.toMatchObject({
      code: 'bad_provider',
    });
  });
});

describe('google preset', () => {
  it('has the documented endpoints and parameters', async () => {
    const p = await resolveProvider({ kind: 'google' });
    expect(p.kind).toBe('google');
    expect(p.issuer).toBe('https://accounts.google.com');
    expect(p.authorizationEndpoint).toBe('https://accounts.google.com/o/oauth2/v2/auth');
    expect(p.tokenEndpoint).toBe('https://oauth2.googleapis.com/token');
    expect(p.revocationEndpoint).toBe('https://oauth2.googleapis.com/revoke');
    expect(p.userinfoEndpoint).toBe('https://openidconnect.googleapis.com/v1/userinfo');
    expect(p.jwksUri).toBe('https://www.googleapis.com/oauth2/v3/certs');
    expect(p.defaultScopes).toEqual(['openid', 'email']);
    expect(p.offlineScope).toBeUndefined();
    expect(p.extraAuthorizeParams).toEqual({ access_type: 'offline', prompt: 'consent' });
    expect(p.confidentialAuthMethod).toBe('client_secret_post');
    expect(p.rotatesRefreshTokens).toBe(false);
    expect(p.defaultAccessLifetimeSec).toBe(3600);
    expect(p.refreshIdleLimitSec).toBe(180 * DAY);
    expect(p.keepAliveIntervalSec).toBeLessThanOrEqual(p.refreshIdleLimitSec / 4);
  });
});

describe('oidc resolution', () => {
  const meta: IssuerMetadata = {
    issuer: 'https://id.example.com',
    authorizationEndpoint: 'https://id.example.com/authorize',
    tokenEndpoint: 'https://id.example.com/token',
    revocationEndpoint: 'https://id.example.com/revoke',
    userinfoEndpoint: 'https://id.example.com/userinfo',
    jwksUri: 'https://id.example.com/jwks',
  };

  it('uses discovery when given an issuer', async () => {
    const discover = vi.fn(async () => meta);
    const p = await resolveProvider({ kind: 'oidc', issuer: 'https://id.example.com' }, { discover });
    expect(discover).toHaveBeenCalledWith('https://id.example.com');
    expect(p).toEqual({
      kind: 'oidc',
      issuer: 'https://id.example.com',
      authorizationEndpoint: 'https://id.example.com/authorize',
      tokenEndpoint: 'https://id.example.com/token',
      revocationEndpoint: 'https://id.example.com/revoke',
      userinfoEndpoint: 'https://id.example.com/userinfo',
      jwksUri: 'https://id.example.com/jwks',
      defaultScopes: ['openid', 'offline_access'],
      offlineScope: 'offline_access',
      extraAuthorizeParams: { prompt: 'consent' },
      confidentialAuthMethod: 'client_secret_basic',
      rotatesRefreshTokens: true,
      oldRefreshTokensStayValid: false,
      defaultAccessLifetimeSec: 3600,
      refreshIdleLimitSec: 14 * DAY,
      keepAliveIntervalSec: 7 * DAY,
    });
  });

  it.each([
    [undefined, 'client_secret_basic'],
    [['client_secret_post', 'client_secret_basic'], 'client_secret_basic'],
    [['private_key_jwt', 'client_secret_post'], 'client_secret_post'],
    [['none'], 'none'],
  ] as const)('picks the auth method from %j', async (supported, expected) => {
    const discover = async () => ({
      ...meta,
      ...(supported ? { tokenEndpointAuthMethodsSupported: [...supported] } : {}),
    });
    const p = await resolveProvider({ kind: 'oidc', issuer: meta.issuer }, { discover });
    expect(p.confidentialAuthMethod).toBe(expected);
  });

  it('refuses a server that supports none of our auth methods', async () => {
    const discover = async () => ({ ...meta, tokenEndpointAuthMethodsSupported: ['private_key_jwt'] });
    await expect(resolveProvider({ kind: 'oidc', issuer: meta.issuer }, { discover })).rejects.toThrow(
      /private_key_jwt/,
    );
  });

  it('uses explicit endpoints without discovery', async () => {
    const discover = vi.fn(async () => meta);
    const p = await resolveProvider(
      {
        kind: 'oidc',
        endpoints: {
          authorization: 'https://auth.example.com/authorize',
          token: 'http://127.0.0.1:8080/token',
        },
      },
      { discover },
    );
    expect(discover).not.toHaveBeenCalled();
    expect(p.issuer).toBeUndefined();
    expect(p.authorizationEndpoint).toBe('https://auth.example.com/authorize');
    expect(p.tokenEndpoint).toBe('http://127.0.0.1:8080/token');
    expect(p.revocationEndpoint).toBeUndefined();
    // No key set: id_token claims from such a server are never trusted.
    expect(p.jwksUri).toBeUndefined();
    expect(p.confidentialAuthMethod).toBe('client_secret_basic');
  });

  it('knows where device-code consent starts: Microsoft and Google presets, discovery, explicit endpoints', async () => {
    expect(
      (await resolveProvider({ kind: 'microsoft', tenant: 'contoso.onmicrosoft.com' }))
        .deviceAuthorizationEndpoint,
    ).toBe('https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode');
    expect((await resolveProvider({ kind: 'google' })).deviceAuthorizationEndpoint).toBe(
      'https://oauth2.googleapis.com/device/code',
    );
    expect((await resolveProvider({ kind: 'x' })).deviceAuthorizationEndpoint).toBeUndefined();
    const explicit = await resolveProvider({
      kind: 'oidc',
      endpoints: {
        authorization: 'https://auth.example.com/authorize',
        token: 'https://auth.example.com/token',
        device: 'https://auth.example.com/device',
      },
    });
    expect(explicit.deviceAuthorizationEndpoint).toBe('https://auth.example.com/device');
    await expect(
      resolveProvider({
        kind: 'oidc',
        endpoints: {
          authorization: 'https://auth.example.com/authorize',
          token: 'https://auth.example.com/token',
          device: 'http://auth.example.com/device',
        },
      }),
    ).rejects.toBeInstanceOf(ClientConfigError);
  });

  it('refuses explicit endpoints over plain http off loopback', async () => {
    await expect(
      resolveProvider({
        kind: 'oidc',
        endpoints: {
          authorization: 'https://auth.example.com/authorize',
          token: 'http://auth.example.com/token',
        },
      }),
    ).rejects.toBeInstanceOf(ClientConfigError);
  });

  it('needs an issuer or endpoints', async () => {
    await expect(resolveProvider({ kind: 'oidc' })).rejects.toMatchObject({ code: 'bad_provider' });
  });

  it('passes discovery errors through', async () => {
    const discover = async () => {
      throw new GrantkeeperError('bad_provider', 'OAuth discovery failed');
    };
    await expect(resolveProvider({ kind: 'oidc', issuer: meta.issuer }, { discover })).rejects.toThrow(
      'OAuth discovery failed',
    );
  });
});

describe('stored profiles', () => {
  it('parses a profile stored before the replay flag existed, defaulting per kind', () => {
    const { oldRefreshTokensStayValid: _, ...legacy } = resolveXLike();
    expect(parseStoredProfile(legacy).oldRefreshTokensStayValid).toBe(false);
    expect(parseStoredProfile({ ...legacy, kind: 'microsoft' }).oldRefreshTokensStayValid).toBe(true);
    expect(parseStoredProfile({ ...legacy, rotatesRefreshTokens: false }).oldRefreshTokensStayValid).toBe(
      true,
    );
  });

  it('refuses a damaged profile in one line', () => {
    expect(() => parseStoredProfile({ kind: 'x' })).toThrow(/damaged provider profile/);
  });
});

function resolveXLike() {
  return {
    kind: 'x' as const,
    authorizationEndpoint: 'https://x.com/i/oauth2/authorize',
    tokenEndpoint: 'https://api.x.com/2/oauth2/token',
    defaultScopes: ['offline.access'],
    extraAuthorizeParams: {},
    confidentialAuthMethod: 'client_secret_basic' as const,
    rotatesRefreshTokens: true,
    oldRefreshTokensStayValid: false,
    defaultAccessLifetimeSec: 7200,
    refreshIdleLimitSec: 100,
    keepAliveIntervalSec: 50,
  };
}
