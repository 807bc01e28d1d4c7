import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  classifyTokenError,
  parseRetryAfter,
  sanitizeText,
  TokenEndpointError,
} from '../../src/oauth/token-errors.js';
import { parseTokenResponse, TokenResponseError } from '../../src/oauth/token-response.js';

const RUNS = { numRuns: 2000 };

/** Token-alphabet secrets with a letter and a digit, so no word of our own messages can equal one. */
const secretArb = fc
  .stringMatching(/^[A-Za-z0-9_.~-]{16,60}$/)
  .filter((s) => /\d/.test(s) && /[A-Za-z]/.test(s));

/** Values a hostile or broken server could put in any JSON field. */
const junk = fc.oneof(
  fc.jsonValue(),
  fc.string(),
  fc.double(),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0, 1e308, -1, 0),
  fc.constantFrom('3600', ' 60 ', '-5', '1.5', '9'.repeat(400), '0x10', '1e3', 'Infinity', ''),
);

const tokenBody = fc.record(
  {
    access_token: fc.oneof(secretArb, junk),
    refresh_token: fc.oneof(secretArb, junk, fc.constant(null)),
    expires_in: junk,
    token_type: fc.oneof(fc.constant('Bearer'), junk),
    scope: junk,
    id_token: junk,
    extra: junk,
  },
  { requiredKeys: [] },
);

describe('parseTokenResponse on arbitrary input', () => {
  it('returns a well-formed token set or throws a TokenResponseError, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(tokenBody, fc.anything()), (body) => {
        let set: ReturnType<typeof parseTokenResponse>;
        try {
          set = parseTokenResponse(body);
        } catch (err) {
          expect(err).toBeInstanceOf(TokenResponseError);
          const salvaged = (err as TokenResponseError).salvagedRefreshToken();
          if (salvaged !== undefined) expect(salvaged).toMatch(/^[\x20-\x7e]+$/);
          return;
        }
        const b = body as Record<string, unknown>;
        expect(set.accessToken).toBe(b.access_token);
        // Visible ASCII, no space: it goes into an Authorization header.
        expect(set.accessToken).toMatch(/^[\x21-\x7e]+$/);
        if (set.refreshToken !== undefined) {
          expect(set.refreshToken).toBe(b.refresh_token);
          expect(set.refreshToken).toMatch(/^[\x20-\x7e]+$/);
        }
        for (const k of ['tokenType', 'scope', 'idToken'] as const) {
          if (set[k] !== undefined) expect(typeof set[k]).toBe('string');
        }
        if (set.expiresIn !== undefined) expect(Number.isFinite(set.expiresIn)).toBe(true);
      }),
      RUNS,
    );
  });

  it('expires_in: finite numbers and numeric strings pass through, anything else is absent', () => {
    fc.assert(
      fc.property(secretArb, junk, (access, expires) => {
        const set = parseTokenResponse({ access_token: access, expires_in: expires });
        if (typeof expires === 'number' && Number.isFinite(expires)) {
          expect(set.expiresIn).toBe(expires);
        } else if (
          typeof expires === 'string' &&
          /^\s*-?\d+(\.\d+)?\s*$/.test(expires) &&
          Number.isFinite(Number(expires))
        ) {
          expect(set.expiresIn).toBe(Number(expires));
        } else {
          expect(set.expiresIn).toBeUndefined();
        }
      }),
      RUNS,
    );
  });

  it('a parse failure never quotes a token from the body', () => {
    fc.assert(
      fc.property(secretArb, secretArb, junk, (refresh, idToken, access) => {
        fc.pre(typeof access !== 'string' || access === '');
        try {
          parseTokenResponse({ access_token: access, refresh_token: refresh, id_token: idToken });
        } catch (err) {
          const text = `${(err as Error).message} ${JSON.stringify(err)}`;
          expect(text).not.toContain(refresh);
          expect(text).not.toContain(idToken);
          return;
        }
        throw new Error('a body without a string access_token must not parse');
      }),
      RUNS,
    );
  });
});

describe('classifyTokenError on arbitrary answers', () => {
  const status = fc.oneof(fc.integer({ min: 100, max: 599 }), fc.constantFrom(400, 401, 429, 500, 503));
  const errorCode = (secret: string) =>
    fc.oneof(
      fc.constantFrom('invalid_grant', 'invalid_request', 'invalid_client', 'temporarily_unavailable'),
      fc.string({ maxLength: 60 }),
      fc.constant(secret),
      fc.constant(`e_${secret.slice(0, 20)}`),
      junk,
    );
  const description = (secret: string) =>
    fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.constant(`refresh token ${secret} is invalid`),
      fc.tuple(fc.string(), fc.string()).map(([a, b]) => `${a}${secret}${b}`),
      fc.constant(`${'x'.repeat(195)}${secret}`),
      junk,
    );
  const answer = secretArb.chain((secret) =>
    fc.record({
      secret: fc.constant(secret),
      others: fc.array(secretArb, { maxLength: 3 }),
      status,
      body: fc.oneof(
        fc.constant(undefined),
        fc.anything(),
        fc.record(
          { error: errorCode(secret), error_description: description(secret), error_uri: junk },
          { requiredKeys: [] },
        ),
      ),
      retryAfter: fc.oneof(
        fc.constant(undefined),
        fc.string(),
        fc.nat().map(String),
        fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()),
        fc.array(fc.string(), { maxLength: 2 }),
      ),
    }),
  );

  it('always returns a TokenEndpointError that is consistent and never echoes a secret we sent', () => {
    fc.assert(
      fc.property(answer, ({ secret, others, status, body, retryAfter }) => {
        const redact = [secret, ...others];
        const err = classifyTokenError({
          status,
          body,
          headers: { 'retry-after': retryAfter },
          now: Date.now(),
          redact,
        });
        expect(err).toBeInstanceOf(TokenEndpointError);
        expect(err.kind === 'permanent').toBe(err.outcome !== 'retry');
        expect(err.code).toMatch(/^[A-Za-z0-9_.-]{1,40}$/);
        if (err.retryAfterMs !== undefined) expect(err.retryAfterMs).toBeGreaterThanOrEqual(0);
        if (status >= 500 || status === 429 || status < 400) expect(err.kind).toBe('transient');
        const visible = [err.message, err.code, err.description ?? ''].join('\n');
        for (const s of redact) expect(visible).not.toContain(s);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: messages go into one log line
        expect(err.message).not.toMatch(/[\u0000-\u001f\u007f]/);
      }),
      RUNS,
    );
  });

  it('an error code echoing the refresh token is replaced by the status (found by this suite)', () => {
    const secret = 'rt0123456789abcdefXYZ';
    const err = classifyTokenError({ status: 400, body: { error: secret }, now: 0, redact: [secret] });
    expect(err.code).toBe('http_400');
    expect(err.message).not.toContain(secret);
    // The RFC's words still classify even if a short secret happens to be inside one.
    const dead = classifyTokenError({
      status: 400,
      body: { error: 'invalid_grant' },
      now: 0,
      redact: ['gran'],
    });
    expect(dead.outcome).toBe('needs_reconsent');
  });

  it('sanitizeText is bounded, single-line and removes every listed secret', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 1000 }), secretArb, fc.nat(1000), (text, secret, at) => {
        const raw = `${text.slice(0, at)}${secret}${text.slice(at)}`;
        const out = sanitizeText(raw, [secret]);
        expect(out.length).toBeLessThanOrEqual(200);
        expect(out).not.toContain(secret);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters must be gone
        expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
      }),
      RUNS,
    );
  });

  it('parseRetryAfter never throws and is never negative or NaN', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.constant(undefined), fc.array(fc.string()), fc.constant(null)),
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        (value, now) => {
          const ms = parseRetryAfter(value, now);
          if (ms !== undefined) {
            expect(Number.isNaN(ms)).toBe(false);
            expect(ms).toBeGreaterThanOrEqual(0);
          }
        },
      ),
      RUNS,
    );
  });
});
