import { describe, expect, it } from 'vitest';
import {
  parseTokenResponse,
  TokenResponseError,
  tokenErrorResponseSchema,
} from '../../src/oauth/token-response.js';

describe('parseTokenResponse', () => {
  it('maps a full response and ignores unknown fields', () => {
    expect(
      parseTokenResponse({
        access_token: 'at',
        refresh_token: 'rt',
        expires_in: 3600,
        token_type: 'bearer',
        scope: 'tweet.read offline.access',
        id_token: 'idt',
        ext_expires_in: 7200,
      }),
    ).toEqual({
      accessToken: 'at',
      refreshToken: 'rt',
      expiresIn: 3600,
      tokenType: 'bearer',
      scope: 'tweet.read offline.access',
      idToken: 'idt',
    });
  });

  it('needs only an access token', () => {
    const set = parseTokenResponse({ access_token: 'at' });
    expect(set).toEqual({ accessToken: 'at' });
    expect('expiresIn' in set).toBe(false);
    expect('refreshToken' in set).toBe(false);
  });

  it('accepts expires_in as a numeric string and keeps zero and negative values', () => {
    expect(parseTokenResponse({ access_token: 'at', expires_in: '3599' }).expiresIn).toBe(3599);
    expect(parseTokenResponse({ access_token: 'at', expires_in: ' 60 ' }).expiresIn).toBe(60);
    expect(parseTokenResponse({ access_token: 'at', expires_in: 0 }).expiresIn).toBe(0);
    expect(parseTokenResponse({ access_token: 'at', expires_in: -30 }).expiresIn).toBe(-30);
    expect(parseTokenResponse({ access_token: 'at', expires_in: '-30' }).expiresIn).toBe(-30);
  });

  it('treats an unusable expires_in as absent rather than dropping freshly rotated tokens', () => {
    for (const expires_in of ['soon', '', null, true, {}, '1e3x']) {
      const set = parseTokenResponse({ access_token: 'at', refresh_token: 'rt', expires_in });
      expect(set).toEqual({ accessToken: 'at', refreshToken: 'rt' });
    }
  });

  it('treats null optional fields and an empty refresh token as absent', () => {
    expect(
      parseTokenResponse({
        access_token: 'at',
        refresh_token: '',
        scope: null,
        id_token: null,
        token_type: null,
      }),
    ).toEqual({ accessToken: 'at' });
  });

  it('rejects bodies without a usable access token', () => {
    for (const body of [undefined, null, 'at', [], {}, { access_token: '' }, { access_token: 42 }]) {
      expect(() => parseTokenResponse(body)).toThrow();
    }
  });

  it('rejects a refresh token that is not a string', () => {
    expect(() => parseTokenResponse({ access_token: 'at', refresh_token: 123 })).toThrow();
  });

  it('refuses tokens with control characters: a protocol error, never stored', () => {
    for (const access_token of ['at\r\nX-Injected: 1', 'at\u0000', 'a t', 'tök']) {
      expect(() => parseTokenResponse({ access_token })).toThrow(TokenResponseError);
    }
    expect(() => parseTokenResponse({ access_token: 'at', refresh_token: 'rt\nrt' })).toThrow(
      /refresh_token that is not visible ASCII/,
    );
    // Opaque tokens with other visible characters are fine.
    expect(parseTokenResponse({ access_token: '00D!AQ|x~+/=' }).accessToken).toBe('00D!AQ|x~+/=');
  });

  it('keeps a valid rotated refresh token from an answer whose access token is unusable', () => {
    let caught: unknown;
    try {
      parseTokenResponse({ access_token: 'at\r\n', refresh_token: 'rt-rotated' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TokenResponseError);
    const err = caught as TokenResponseError;
    expect(err.salvagedRefreshToken()).toBe('rt-rotated');
    // Nothing that serializes the error reaches the token.
    expect(JSON.stringify(err)).not.toContain('rt-rotated');
    expect(err.message).not.toContain('rt-rotated');
  });

  it('drops cosmetic fields with control characters instead of refusing the tokens', () => {
    expect(
      parseTokenResponse({
        access_token: 'at',
        refresh_token: 'rt',
        scope: 'a\nb',
        token_type: 'Bearer\u0000',
      }),
    ).toEqual({
      accessToken: 'at',
      refreshToken: 'rt',
    });
  });
});

describe('tokenErrorResponseSchema', () => {
  it('parses an RFC 6749 §5.2 body', () => {
    expect(
      tokenErrorResponseSchema.parse({
        error: 'invalid_grant',
        error_description: 'expired',
        error_uri: 'https://example.com/e',
        trace_id: 'x',
      }),
    ).toEqual({ error: 'invalid_grant', error_description: 'expired', error_uri: 'https://example.com/e' });
  });

  it('requires a non-empty error string', () => {
    expect(tokenErrorResponseSchema.safeParse({}).success).toBe(false);
    expect(tokenErrorResponseSchema.safeParse({ error: '' }).success).toBe(false);
    expect(tokenErrorResponseSchema.safeParse({ error: 5 }).success).toBe(false);
  });
});
