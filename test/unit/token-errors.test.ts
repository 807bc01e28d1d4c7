import { describe, expect, it } from 'vitest';
import {
  classifyTokenError,
  forServiceGrant,
  networkError,
  parseRetryAfter,
  responseTooLargeError,
  sanitizeText,
  TokenEndpointError,
  timeoutError,
} from '../../src/oauth/token-errors.js';

const NOW = Date.parse('2025-06-01T12:00:00Z');
const classify = (status: number, body: unknown, headers: Record<string, string> = {}, redact?: string[]) =>
  classifyTokenError({ status, body, headers, now: NOW, ...(redact ? { redact } : {}) });

describe('parseRetryAfter', () => {
  it('reads delta-seconds', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', NOW)).toBe(0);
    expect(parseRetryAfter(['7', '9'], NOW)).toBe(7_000);
  });

  it('reads an HTTP-date relative to now and never goes negative', () => {
    expect(parseRetryAfter('Sun, 01 Jun 2025 12:01:30 GMT', NOW)).toBe(90_000);
    expect(parseRetryAfter('Sunday, 01-Jun-25 12:00:10 GMT', NOW)).toBe(10_000);
    expect(parseRetryAfter('Sun, 01 Jun 2025 11:00:00 GMT', NOW)).toBe(0);
  });

  it('is undefined when absent or unparseable', () => {
    for (const v of [undefined, null, '', '  ', '-5', '1.5', 'soon', 'Sun, garbage', '9'.repeat(400)]) {
      expect(parseRetryAfter(v, NOW)).toBeUndefined();
    }
  });
});

describe('classifyTokenError: permanent', () => {
  it('invalid_grant needs re-consent and marks the token spent', () => {
    const e = classify(400, {
      error: 'invalid_grant',
      error_description: 'Token has been expired or revoked.',
    });
    expect(e).toBeInstanceOf(TokenEndpointError);
    expect(e).toMatchObject({
      kind: 'permanent',
      outcome: 'needs_reconsent',
      code: 'invalid_grant',
      status: 400,
      spentToken: true,
      description: 'Token has been expired or revoked.',
    });
    expect(e.message).toContain('invalid_grant');
    expect(e.message).toContain('HTTP 400');
  });

  it("X's spent refresh token (400 invalid_request, token was invalid) needs re-consent", () => {
    const e = classify(400, {
      error: 'invalid_request',
      error_description: 'Value passed for the token was invalid.',
    });
    expect(e).toMatchObject({
      kind: 'permanent',
      outcome: 'needs_reconsent',
      code: 'invalid_request',
      spentToken: true,
    });
  });

  it('other invalid_request answers stay transient', () => {
    expect(
      classify(400, { error: 'invalid_request', error_description: 'Missing grant_type' }),
    ).toMatchObject({
      kind: 'transient',
      outcome: 'retry',
      code: 'invalid_request',
      spentToken: false,
    });
    expect(classify(401, { error: 'invalid_request', error_description: 'the token was invalid' }).kind).toBe(
      'transient',
    );
  });

  it.each(['interaction_required', 'consent_required', 'login_required'])('%s needs re-consent', (code) => {
    expect(classify(400, { error: code })).toMatchObject({
      kind: 'permanent',
      outcome: 'needs_reconsent',
      code,
      spentToken: false,
    });
  });

  it.each([
    ['invalid_client', 401],
    ['unauthorized_client', 400],
    ['unsupported_grant_type', 400],
    ['invalid_scope', 400],
  ])('%s is a client error', (code, status) => {
    expect(classify(status, { error: code })).toMatchObject({
      kind: 'permanent',
      outcome: 'client_error',
      code,
      status,
      spentToken: false,
    });
  });

  it('keeps the code when error_description has the wrong type', () => {
    expect(classify(400, { error: 'invalid_grant', error_description: 42 })).toMatchObject({
      kind: 'permanent',
      code: 'invalid_grant',
    });
  });
});

describe('classifyTokenError: transient', () => {
  it.each([500, 502, 503, 504])('%i retries with http_<status>', (status) => {
    expect(classify(status, undefined)).toMatchObject({
      kind: 'transient',
      outcome: 'retry',
      code: `http_${status}`,
    });
  });

  it('a 5xx is transient even if its body claims invalid_grant', () => {
    expect(classify(500, { error: 'invalid_grant' })).toMatchObject({ kind: 'transient', spentToken: false });
  });

  it('429 is rate_limited and carries Retry-After', () => {
    expect(classify(429, undefined, { 'retry-after': '30' })).toMatchObject({
      kind: 'transient',
      code: 'rate_limited',
      status: 429,
      retryAfterMs: 30_000,
    });
  });

  it.each(['temporarily_unavailable', 'server_error', 'slow_down', 'something_new'])('%s retries', (code) => {
    expect(classify(400, { error: code })).toMatchObject({ kind: 'transient', outcome: 'retry', code });
  });

  it('unknown 4xx without an OAuth body retries', () => {
    expect(classify(403, undefined)).toMatchObject({ kind: 'transient', code: 'http_403' });
    expect(classify(404, { message: 'not here' })).toMatchObject({ kind: 'transient', code: 'http_404' });
    expect(classify(302, undefined)).toMatchObject({ kind: 'transient', code: 'http_302' });
  });

  it('a 2xx without tokens is bad_response', () => {
    const notJson = classify(200, undefined);
    expect(notJson).toMatchObject({ kind: 'transient', code: 'bad_response', status: 200 });
    expect(notJson.message).toContain('not JSON');
    expect(classify(200, { token_type: 'bearer' }).code).toBe('bad_response');
  });

  it('carries Retry-After on permanent errors too', () => {
    expect(classify(400, { error: 'invalid_grant' }, { 'retry-after': '5' }).retryAfterMs).toBe(5_000);
    expect(classify(503, undefined).retryAfterMs).toBeUndefined();
  });

  it('falls back to the status when the error code is not a plain identifier', () => {
    expect(classify(400, { error: 'gk-test-rt-0123456789abcdef0123456789abcdef0123' }).code).toBe('http_400');
    expect(classify(400, { error: 'bad\ncode' }).code).toBe('http_400');
  });
});

describe('secrets and descriptions', () => {
  const rt = 'gk-test-rt-0123456789abcdef0123456789abcdef';

  it('never echoes a token the server repeats back', () => {
    const e = classify(
      400,
      { error: 'invalid_grant', error_description: `refresh token ${rt} is unknown` },
      {},
      [rt],
    );
    expect(e.message).not.toContain(rt);
    expect(e.description).toBe('refresh token [redacted] is unknown');
  });

  it('redacts token-like runs even when not told the secret, but keeps trace ids', () => {
    const trace = '5b1c7a2e-1f3d-4c5b-9a8e-7d6c5b4a3f21';
    const text = sanitizeText(`bad token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln. Trace ID: ${trace}`);
    expect(text).toBe(`bad token [redacted] Trace ID: ${trace}`);
    expect(sanitizeText('see reference-aadsts-error-codes-and-more')).toBe(
      'see reference-aadsts-error-codes-and-more',
    );
  });

  it('strips control characters and truncates to 200 characters', () => {
    const e = classify(400, {
      error: 'invalid_grant',
      error_description: `a\u0000b\r\n\u001bc ${'word '.repeat(80)}`,
    });
    expect(e.description?.startsWith('a b c word')).toBe(true);
    expect(e.description).toHaveLength(200);
    expect(e.description).not.toMatch(/\p{Cc}/u);
  });

  it('factories build transient errors with readable messages', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
    const net = networkError(refused, false);
    expect(net).toMatchObject({
      kind: 'transient',
      outcome: 'retry',
      code: 'network',
      spentToken: false,
      requestSent: false,
      answerLost: false,
    });
    expect(networkError(refused, true)).toMatchObject({ requestSent: true, answerLost: true });
    expect(net.message).toContain('ECONNREFUSED');
    expect(net.cause).toBe(refused);
    expect(timeoutError(2500, true)).toMatchObject({ kind: 'transient', code: 'timeout', answerLost: true });
    expect(timeoutError(2500, true).message).toContain('2500 ms');
    expect(responseTooLargeError(1024, 200, 3000)).toMatchObject({
      kind: 'transient',
      code: 'response_too_large',
      status: 200,
      retryAfterMs: 3000,
      answerLost: true,
    });
    // A refusal over the cap settled nothing at the provider.
    expect(responseTooLargeError(1024, 503).answerLost).toBe(false);
  });
});

describe('forServiceGrant', () => {
  const refused = (error: string) =>
    classifyTokenError({ status: 400, body: { error, error_description: 'assertion rejected' }, now: 0 });

  it('reads invalid_grant and the consent codes as the client refused, never a dead consent', () => {
    for (const code of ['invalid_grant', 'consent_required', 'interaction_required']) {
      const e = forServiceGrant(refused(code));
      expect(e).toMatchObject({
        kind: 'permanent',
        outcome: 'client_error',
        code,
        status: 400,
        spentToken: false,
      });
      expect(e.message).toMatch(/client registration was rejected/);
      expect(e.message).toContain('assertion rejected');
    }
  });

  it('leaves client errors and transient errors as they are', () => {
    for (const code of ['invalid_client', 'unauthorized_client', 'temporarily_unavailable']) {
      const e = refused(code);
      expect(forServiceGrant(e)).toBe(e);
    }
    expect(forServiceGrant(refused('invalid_client')).outcome).toBe('client_error');
  });
});
