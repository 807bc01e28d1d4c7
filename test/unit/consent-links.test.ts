import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { durationArg } from '../../src/cli/parsers.js';
import { publicUrlSchema } from '../../src/config/config-schema.js';
import {
  ConsentLinkError,
  completeConsentLink,
  createConsentLink,
  MAX_LINK_TTL_MS,
  MIN_LINK_TTL_MS,
  openConsentLink,
} from '../../src/consent/consent-links.js';
import { takeoverProblem } from '../../src/consent/grant-label.js';

const linkTakeoverProblem = (...args: Parameters<typeof takeoverProblem>) =>
  takeoverProblem(args[0], args[1], args[2], 'link');

describe('GRANTKEEPER_PUBLIC_URL', () => {
  const parse = (value: string) => publicUrlSchema.safeParse(value);
  it('takes https anywhere and http only on a loopback host, without a trailing slash', () => {
    expect(parse('https://gk.example.com/').data).toBe('https://gk.example.com');
    expect(parse('https://gk.example.com/gk/').data).toBe('https://gk.example.com/gk');
    expect(parse('http://127.0.0.1:7420').data).toBe('http://127.0.0.1:7420');
    expect(parse('http://localhost:7420').data).toBe('http://localhost:7420');
    expect(parse('http://[::1]:7420').data).toBe('http://[::1]:7420');
  });
  it('refuses plain http elsewhere, queries, fragments, credentials and non-URLs with one message each', () => {
    const message = (value: string) => parse(value).error?.issues.map((i) => i.message);
    expect(message('http://gk.example.com')).toEqual([expect.stringMatching(/must be https/)]);
    expect(message('https://gk.example.com/?a=1')).toEqual([expect.stringMatching(/no query/)]);
    expect(message('https://gk.example.com/#x')).toEqual([expect.stringMatching(/no query, fragment/)]);
    expect(message('https://u:p@gk.example.com')).toEqual([expect.stringMatching(/credentials/)]);
    expect(message('ftp://gk.example.com')).toEqual(['expected an http(s) URL']);
    expect(message('not a url')).toEqual(['expected an http(s) URL']);
  });
});

describe('--expires', () => {
  const parse = durationArg(MIN_LINK_TTL_MS, MAX_LINK_TTL_MS);
  it('reads minutes, hours and days', () => {
    expect(parse('30m')).toBe(30 * 60_000);
    expect(parse('24h')).toBe(24 * 3_600_000);
    expect(parse('7d')).toBe(7 * 86_400_000);
  });
  it('refuses other units, bare numbers and spans outside 5 minutes to 30 days', () => {
    for (const bad of ['3w', '24', 'h', '-1h', '1.5h', '4m', '31d']) {
      expect(() => parse(bad), bad).toThrow(InvalidArgumentError);
    }
  });
});

describe('which grant a consent link may renew', () => {
  const existing = {
    id: 'g_aaaaaaaaaaaa',
    clientRef: 'c_1',
    subject: 'alice',
    kind: 'authorization_code' as const,
  };
  it('only its own account on its own client', () => {
    expect(linkTakeoverProblem('@alice', existing, { clientRef: 'c_1', subject: 'alice' })).toBeUndefined();
    expect(linkTakeoverProblem('@alice', existing, { clientRef: 'c_1', subject: 'mallory' })).toMatch(
      /^this link renews grant "@alice", but grant "@alice" \(g_aaaaaaaaaaaa\) belongs to another account; nothing was stored/,
    );
    expect(linkTakeoverProblem('@alice', existing, { clientRef: 'c_2', subject: 'alice' })).toMatch(
      /another client/,
    );
    expect(linkTakeoverProblem('@alice', existing, { clientRef: 'c_1' })).toMatch(
      /did not say which account/,
    );
    expect(
      linkTakeoverProblem('@alice', { ...existing, subject: null }, { clientRef: 'c_1', subject: 'alice' }),
    ).toMatch(/without an account id/);
  });
});

describe('consent links refuse before touching the store', () => {
  // Any store call would throw: these refusals must not need one.
  const untouchable = new Proxy(
    {},
    {
      get: () => {
        throw new Error('the store was called');
      },
    },
  );
  const deps = {
    links: untouchable,
    clients: untouchable,
    grants: untouchable,
    publicUrl: 'https://gk.example',
  } as never;
  const refusal = (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (err: unknown) => (err instanceof ConsentLinkError ? { status: err.httpStatus, code: err.code } : err),
    );

  it('a malformed token, or a redirect without one valid state', async () => {
    expect(await refusal(openConsentLink(deps, 'short'))).toEqual({ status: 400, code: 'malformed_link' });
    expect(await refusal(openConsentLink(deps, `${'a'.repeat(42)}!`))).toEqual({
      status: 400,
      code: 'malformed_link',
    });
    const state = 'a'.repeat(43);
    for (const query of ['', 'code=x', `state=${state}&state=${state}`, 'state=short&code=x']) {
      expect(await refusal(completeConsentLink(deps, new URLSearchParams(query))), query).toEqual({
        status: 400,
        code: 'bad_state',
      });
    }
  });

  it('a link without a public URL, a bad label or an expiry out of bounds', async () => {
    const noUrl = { ...(deps as object), publicUrl: undefined } as never;
    expect(await refusal(createConsentLink(noUrl, { client: 'x', label: '@a' }))).toEqual({
      status: 409,
      code: 'no_public_url',
    });
    expect(await refusal(createConsentLink(deps, { client: 'x', label: 'two words' }))).toEqual({
      status: 400,
      code: 'bad_request',
    });
    expect(await refusal(createConsentLink(deps, { client: 'x', label: '@a', ttlMs: 1000 }))).toEqual({
      status: 400,
      code: 'bad_request',
    });
  });
});
