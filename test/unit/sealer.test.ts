import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Keyring, keyIdFor, SealError, Sealer, type SealingKey } from '../../src/crypto/sealer.js';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';

function newKey(): SealingKey {
  const key = randomBytes(32);
  return { id: keyIdFor(key), key };
}

const CTX = 'grant:g_123:refresh_token';
const SECRET = 'rt-super-secret-värde-🔑';

function sealError(fn: () => unknown): SealError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SealError);
    expect(err).toBeInstanceOf(GrantkeeperError);
    expect(err).toHaveProperty('code', 'sealing_key_unusable');
    return err as SealError;
  }
  throw new Error('expected a SealError');
}

describe('keyIdFor', () => {
  it('is short, stable and does not reveal the key', () => {
    const { key, id } = newKey();
    expect(id).toMatch(/^k[0-9a-f]{10}$/);
    expect(keyIdFor(Buffer.from(key))).toBe(id);
    expect(keyIdFor(randomBytes(32))).not.toBe(id);
    expect(key.toString('hex')).not.toContain(id.slice(1));
  });
});

describe('Keyring', () => {
  it('lists the primary first and finds previous keys', () => {
    const a = newKey();
    const b = newKey();
    const ring = new Keyring(a, [b, a]);
    expect(ring.primary).toBe(a);
    expect(ring.ids()).toEqual([a.id, b.id]);
    expect(ring.get(b.id)).toBe(b);
    expect(ring.get('knope')).toBeUndefined();
  });

  it('rejects keys of the wrong size', () => {
    expect(() => new Keyring({ id: 'kshort', key: randomBytes(16) })).toThrow(/32 bytes/);
  });
});

describe('Sealer', () => {
  const key = newKey();
  const sealer = new Sealer(new Keyring(key));

  it('round-trips', () => {
    const sealed = sealer.seal(SECRET, CTX);
    expect(sealed).toMatch(/^gk1\.k[0-9a-f]{10}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain(SECRET);
    expect(sealer.open(sealed, CTX)).toBe(SECRET);
    expect(sealer.open(sealer.seal('', CTX), CTX)).toBe('');
    expect(sealer.keyIdOf(sealed)).toBe(key.id);
  });

  it('uses a fresh IV every time, across refills of the IV pool', () => {
    const ivs = new Set(Array.from({ length: 1000 }, () => sealer.seal(SECRET, CTX).split('.')[2]));
    expect(ivs.size).toBe(1000);
  });

  it('binds the value to its context', () => {
    const sealed = sealer.seal(SECRET, CTX);
    const err = sealError(() => sealer.open(sealed, 'grant:g_456:refresh_token'));
    expect(err.reason).toBe('authentication');
    expect(err.message).toContain(key.id);
  });

  it('names both key ids when the sealing key is not loaded', () => {
    const other = newKey();
    const sealed = new Sealer(new Keyring(other)).seal(SECRET, CTX);
    const err = sealError(() => sealer.open(sealed, CTX));
    expect(err.reason).toBe('unknown-key');
    expect(err.message).toBe(
      `${CTX} was sealed with key ${other.id}, but the loaded key is ${key.id}: set GRANTKEEPER_KEY to the key that sealed it`,
    );
  });

  it('opens values sealed under a previous key and seals under the primary', () => {
    const next = newKey();
    const rotated = new Sealer(new Keyring(next, [key]));
    expect(rotated.open(sealer.seal(SECRET, CTX), CTX)).toBe(SECRET);
    expect(rotated.keyIdOf(rotated.seal(SECRET, CTX))).toBe(next.id);
  });

  it('reports wrong key material under a matching id', () => {
    const impostor = new Sealer(new Keyring({ id: key.id, key: randomBytes(32) }));
    const err = sealError(() => impostor.open(sealer.seal(SECRET, CTX), CTX));
    expect(err.reason).toBe('authentication');
    expect(err.message).toMatch(new RegExp(`could not be opened with key ${key.id}: wrong key material`));
  });

  it('detects tampering with any part', () => {
    const sealed = sealer.seal(SECRET, CTX);
    const [format, id, iv, body] = sealed.split('.') as [string, string, string, string];
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    for (const altered of [
      [format, id, flip(iv, 3), body],
      [format, id, iv, flip(body, 0)],
      [format, id, iv, flip(body, body.length - 3)],
      [format, id, iv, body.slice(0, -4)],
    ]) {
      const err = sealError(() => sealer.open(altered.join('.'), CTX));
      expect(err.reason).toBe('authentication');
      expect(err.message).not.toContain(SECRET);
    }
  });

  it('rejects malformed input without echoing it', () => {
    const sealed = sealer.seal(SECRET, CTX);
    const [, id, iv] = sealed.split('.');
    for (const bad of [
      '',
      'plain-access-token-in-clear',
      sealed.replace(/^gk1/, 'gk2'),
      `${sealed}.extra`,
      `gk1..${iv}.AAAAAAAAAAAAAAAAAAAAAA`,
      `gk1.${id}.AAAA.AAAAAAAAAAAAAAAAAAAAAA`,
      `gk1.${id}.${iv}.AAAA`,
      `gk1.${id}.${iv}.AAAA+AAAAAAAAAAAAAAAAAAAA`,
    ]) {
      const err = sealError(() => sealer.open(bad, CTX));
      expect(err.reason).toBe('malformed');
      expect(err.message).toContain(CTX);
      if (bad) expect(err.message).not.toContain(bad);
    }
    expect(sealError(() => sealer.keyIdOf('nope')).reason).toBe('malformed');
  });
});
