import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConsentError,
  carriesState,
  codeFromCallback,
  codeFromPaste,
  describeAuthorizationError,
} from '../../src/consent/callback.js';
import { loopbackTarget } from '../../src/consent/loopback-receiver.js';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';

const RUNS = { numRuns: 2000 };
const stateArb = fc.stringMatching(/^[A-Za-z0-9_-]{22,43}$/);
const codeArb = fc.stringMatching(/^[A-Za-z0-9_.~-]{20,64}$/);
const paramName = fc.constantFrom(
  'state',
  'code',
  'error',
  'error_description',
  'iss',
  'x',
  'STATE',
  'code ',
);
const params = fc
  .array(fc.tuple(paramName, fc.oneof(fc.string(), fc.string({ unit: 'binary' }), stateArb, codeArb)), {
    maxLength: 8,
  })
  .map((pairs) => new URLSearchParams(pairs));

/** Runs fn; only a ConsentError may escape. */
function outcome(fn: () => string): { code: string } | { error: ConsentError } {
  try {
    return { code: fn() };
  } catch (err) {
    expect(err).toBeInstanceOf(ConsentError);
    return { error: err as ConsentError };
  }
}

describe('codeFromCallback on arbitrary redirects', () => {
  it('returns the single code only when the state is exactly ours, else a ConsentError', () => {
    fc.assert(
      fc.property(params, stateArb, (query, expected) => {
        const result = outcome(() => codeFromCallback(query, expected));
        if ('code' in result) {
          expect(query.get('state')).toBe(expected);
          expect(query.has('error')).toBe(false);
          expect(query.getAll('code')).toEqual([result.code]);
          expect(result.code).not.toBe('');
        } else if (query.get('state') !== expected) {
          // The state is checked before anything else, so a forged redirect learns nothing.
          expect(result.error.message).toMatch(/no state parameter|state that does not match/);
        }
      }),
      RUNS,
    );
  });

  it('only a redirect carrying exactly our state answers the consent (the listener ignores the rest)', () => {
    fc.assert(
      fc.property(params, stateArb, (query, expected) => {
        expect(carriesState(query, expected)).toBe(query.get('state') === expected);
        if (!carriesState(query, expected)) {
          expect(() => codeFromCallback(query, expected)).toThrow(
            /no state parameter|state that does not match/,
          );
        }
      }),
      RUNS,
    );
  });

  it('a forged state is refused whatever else the redirect carries, and neither state is echoed', () => {
    fc.assert(
      fc.property(stateArb, stateArb, codeArb, fc.option(fc.string()), (ours, forged, code, error) => {
        fc.pre(ours !== forged);
        const query = new URLSearchParams({ state: forged, code, ...(error === null ? {} : { error }) });
        const result = outcome(() => codeFromCallback(query, ours));
        expect('error' in result).toBe(true);
        if ('error' in result) {
          expect(result.error.message).not.toContain(ours);
          expect(result.error.message).not.toContain(forged);
          expect(result.error.message).not.toContain(code);
        }
      }),
      RUNS,
    );
  });

  it('provider error text reaches the terminal bounded and without control characters', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary' }),
        fc.option(fc.string({ unit: 'binary', maxLength: 2000 })),
        (e, d) => {
          const text = describeAuthorizationError(e, d);
          // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escapes must be gone
          expect(text).not.toMatch(/[\u0000-\u001f\u007f]/);
          expect(text.length).toBeLessThan(600);
        },
      ),
      RUNS,
    );
  });
});

describe('codeFromPaste on arbitrary pasted text', () => {
  const pasted = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    codeArb,
    fc.webUrl({ withQueryParameters: true, withFragments: true }),
    fc
      .tuple(fc.webUrl(), stateArb, codeArb)
      .map(([u, s, c]) => `${u}${u.includes('?') ? '&' : '?'}state=${s}&code=${c}`),
    fc.tuple(stateArb, codeArb).map(([s, c]) => `?state=${s}&code=${c}`),
    fc.string().map((s) => `code=${s}`),
  );

  it('yields a printable single-token code or a ConsentError, and never accepts a foreign state', () => {
    fc.assert(
      fc.property(pasted, stateArb, (text, expected) => {
        const result = outcome(() => codeFromPaste(text, expected));
        if (!('code' in result)) return;
        expect(result.code.length).toBeGreaterThan(0);
        const carriesQuery = text.includes('://') || /(^|[?&])(code|error|state)=/.test(text.trim());
        if (carriesQuery) {
          const query = text.includes('://')
            ? new URL(text.trim()).searchParams
            : new URLSearchParams(text.trim().replace(/^\?/, ''));
          expect(query.get('state')).toBe(expected);
        } else {
          expect(result.code).toMatch(/^[\x21-\x7e]{1,4096}$/);
        }
      }),
      RUNS,
    );
  });

  it('a pasted URL with the right state but a different path or host still returns its code', () => {
    fc.assert(
      fc.property(fc.webUrl(), stateArb, codeArb, (base, state, code) => {
        const url = new URL(base);
        url.search = new URLSearchParams({ state, code }).toString();
        expect(codeFromPaste(url.href, state)).toBe(code);
      }),
      { numRuns: 300 },
    );
  });
});

describe('loopbackTarget on arbitrary redirect URIs', () => {
  it('accepts only http on 127.0.0.0/8, ::1 or localhost; anything else is a consent_failed error', () => {
    const uri = fc.oneof(
      fc.string(),
      fc.webUrl(),
      fc
        .tuple(
          fc.constantFrom('http', 'https', 'HTTP', 'file', 'javascript'),
          fc.oneof(
            fc.ipV4(),
            fc.ipV6().map((ip) => `[${ip}]`),
            fc.domain(),
            fc.constantFrom(
              'localhost',
              '127.0.0.1',
              '[::1]',
              '0.0.0.0',
              '[::]',
              '127.1',
              'localhost.evil.com',
            ),
          ),
          fc.option(fc.integer({ min: 0, max: 70000 })),
          fc.webPath(),
        )
        .map(([scheme, host, port, path]) => `${scheme}://${host}${port === null ? '' : `:${port}`}${path}`),
    );
    fc.assert(
      fc.property(uri, (raw) => {
        let target: ReturnType<typeof loopbackTarget>;
        try {
          target = loopbackTarget(raw);
        } catch (err) {
          expect(err).toBeInstanceOf(GrantkeeperError);
          expect(err).toHaveProperty('code', 'consent_failed');
          return;
        }
        expect(target.host).toMatch(/^(localhost|::1|127\.\d{1,3}\.\d{1,3}\.\d{1,3})$/);
        expect(new URL(raw).protocol).toBe('http:');
        expect(target.port).toBeGreaterThanOrEqual(0);
        expect(target.port).toBeLessThan(65536);
      }),
      RUNS,
    );
  });
});
