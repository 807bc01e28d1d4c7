import { describe, expect, it } from 'vitest';
import { csrfTokenFor, csrfTokenMatches, hashSessionId } from '../../src/api/auth/browser-sessions.js';
import { HostAllowList } from '../../src/api/guards/host-allow-list.js';
import { configSchema } from '../../src/config/config-schema.js';

const extra = (value: string) => configSchema.parse({ apiAllowedHosts: value }).apiAllowedHosts;

describe('the Host allow-list (DNS rebinding)', () => {
  it('admits the loopback names on the listening port only, in any case', () => {
    const list = new HostAllowList('127.0.0.1', 7420, []);
    for (const host of ['127.0.0.1:7420', 'localhost:7420', 'LOCALHOST:7420', '[::1]:7420']) {
      expect(list.allows(host), host).toBe(true);
    }
    for (const host of [
      undefined,
      '',
      '127.0.0.1',
      'localhost',
      '127.0.0.1:7421',
      'evil.example:7420',
      '127.0.0.1:7420.evil.example',
      'localhost.evil.example:7420',
      '127.0.0.2:7420',
      '[::1]',
      '::1:7420',
      '127.0.0.1:7420 ',
    ]) {
      expect(list.allows(host), String(host)).toBe(false);
    }
  });

  it('adds the bind address unless it is a wildcard, and an IPv6 one in brackets', () => {
    expect(new HostAllowList('192.168.1.5', 7420, []).allows('192.168.1.5:7420')).toBe(true);
    expect(new HostAllowList('fd00::5', 7420, []).allows('[fd00::5]:7420')).toBe(true);
    for (const wildcard of ['0.0.0.0', '::']) {
      const list = new HostAllowList(wildcard, 7420, []);
      expect(list.allows(`${wildcard}:7420`)).toBe(false);
      expect(list.allows('[::]:7420')).toBe(false);
      expect(list.allows('localhost:7420')).toBe(true);
    }
  });

  it('admits configured hosts: with a port exactly, without one on any port', () => {
    const list = new HostAllowList('0.0.0.0', 7420, extra('gk.internal, 10.0.0.5:8080,Proxy.Example:80'));
    expect(list.allows('gk.internal')).toBe(true);
    expect(list.allows('gk.internal:7420')).toBe(true);
    expect(list.allows('GK.INTERNAL:443')).toBe(true);
    expect(list.allows('10.0.0.5:8080')).toBe(true);
    expect(list.allows('10.0.0.5:7420')).toBe(false);
    expect(list.allows('10.0.0.5')).toBe(false);
    // Port 80 is what a Host header without a port means.
    expect(list.allows('proxy.example')).toBe(true);
    expect(list.allows('proxy.example:80')).toBe(true);
    expect(list.allows('sub.gk.internal')).toBe(false);
  });

  it('refuses malformed hosts in the configuration', () => {
    for (const bad of [
      'gk internal',
      'gk.internal:0',
      'gk.internal:70000',
      'http://gk.internal',
      'a:b:c',
      '*',
    ]) {
      expect(configSchema.safeParse({ apiAllowedHosts: bad }).success, bad).toBe(false);
    }
  });
});

describe('the CSRF token', () => {
  const session = (id: string) => ({
    id,
    csrfToken: csrfTokenFor(id),
    principal: { keyId: 'k', name: 'k', role: 'admin' as const, grantIds: null },
    expiresAt: 0,
  });
  const id = 'a'.repeat(43);

  it('is derived from the session id alone, differs per session and from the stored hash', () => {
    expect(csrfTokenFor(id)).toBe(csrfTokenFor(id));
    expect(csrfTokenFor(id)).not.toBe(csrfTokenFor('b'.repeat(43)));
    expect(csrfTokenFor(id)).not.toContain(id);
    expect(Buffer.from(csrfTokenFor(id), 'base64url').toString('hex')).not.toBe(hashSessionId(id));
  });

  it('matches only the exact token', () => {
    const s = session(id);
    expect(csrfTokenMatches(s, s.csrfToken)).toBe(true);
    for (const wrong of [
      undefined,
      '',
      s.csrfToken.slice(1),
      `${s.csrfToken}x`,
      csrfTokenFor('b'.repeat(43)),
      [s.csrfToken],
    ]) {
      expect(csrfTokenMatches(s, wrong)).toBe(false);
    }
  });
});
