import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';

// Watch every constant-time comparison the authenticator makes, keeping the real implementation.
const compare = vi.hoisted(() => ({ calls: [] as Array<[Buffer, Buffer]> }));
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      compare.calls.push([Buffer.from(a as Buffer), Buffer.from(b as Buffer)]);
      return real.timingSafeEqual(a, b);
    },
  };
});

const { ApiKeyAuthenticator } = await import('../../src/api/auth/api-key-authenticator.js');
const { createLogger } = await import('../../src/log/logger.js');
type Store = ConstructorParameters<typeof ApiKeyAuthenticator>[0];

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function fakeStore(
  keys: string[],
  access: { role: string; grantIds: string[] | null } = { role: 'admin', grantIds: null },
) {
  const rows = keys.map((key, i) => ({
    id: `k${i}`,
    name: `key${i}`,
    keyHash: sha256(key).toString('hex'),
    ...access,
    createdAt: 0,
    lastUsedAt: null,
  }));
  const lookups: string[] = [];
  const store = {
    listWithHashes: async () => rows,
    findById: async (id: string) => rows.find((r) => r.id === id),
    findByHash: async (hex: string) => {
      lookups.push(hex);
      return rows.find((r) => r.keyHash === hex);
    },
    touch: async () => {},
  } as unknown as Store;
  return { store, lookups };
}

describe('API key authentication', () => {
  const real = `gk_${randomBytes(32).toString('base64url')}`;

  it('hashes the presented key and decides with timingSafeEqual on the 32-byte digests', async () => {
    const { store } = fakeStore([real]);
    const auth = new ApiKeyAuthenticator(store, createLogger({ level: 'silent' }));
    compare.calls.length = 0;
    expect((await auth.authenticate(real))?.keyId).toBe('k0');
    expect(compare.calls).toHaveLength(1);
    const [stored, presented] = compare.calls[0]!;
    expect(stored.equals(sha256(real))).toBe(true);
    expect(presented.equals(sha256(real))).toBe(true);
    expect(presented.length).toBe(32);
  });

  it('a wrong key is only ever looked up by its hash, never in clear, and is refused', async () => {
    const { store, lookups } = fakeStore([real]);
    const auth = new ApiKeyAuthenticator(store, createLogger({ level: 'silent' }));
    // Differs from the real key in its last character: the case a byte-wise early-exit compare leaks.
    const near = `${real.slice(0, -1)}${real.endsWith('A') ? 'B' : 'A'}`;
    expect(await auth.authenticate(near)).toBeUndefined();
    expect(lookups).toEqual([sha256(near).toString('hex')]);
    expect(lookups.join()).not.toContain(near);
  });

  it('refuses without any lookup what cannot be a key (no prefix, oversized, empty)', async () => {
    const { store, lookups } = fakeStore([real]);
    const auth = new ApiKeyAuthenticator(store, createLogger({ level: 'silent' }));
    for (const k of [undefined, '', real.slice(3), `gk_${'a'.repeat(500)}`]) {
      expect(await auth.authenticate(k)).toBeUndefined();
    }
    expect(lookups).toEqual([]);
  });

  it('gives an admin every grant and a reader only its own; a reader row without a list reads nothing', async () => {
    const logger = createLogger({ level: 'silent' });
    const admin = await new ApiKeyAuthenticator(fakeStore([real]).store, logger).authenticate(real);
    expect(admin).toMatchObject({ role: 'admin', grantIds: null });
    const reader = await new ApiKeyAuthenticator(
      fakeStore([real], { role: 'reader', grantIds: ['g_1'] }).store,
      logger,
    ).authenticate(real);
    expect(reader).toMatchObject({ role: 'reader', grantIds: new Set(['g_1']) });
    // Made by hand (or by a bug): never an implicit admin, never every grant.
    const bare = new ApiKeyAuthenticator(fakeStore([real], { role: 'reader', grantIds: null }).store, logger);
    expect(await bare.authenticate(real)).toMatchObject({ role: 'reader', grantIds: new Set() });
    const odd = new ApiKeyAuthenticator(fakeStore([real], { role: 'owner', grantIds: null }).store, logger);
    expect((await odd.authenticate(real))?.role).toBe('reader');
  });

  it('finds the key a browser session names by its id, and nothing once it is gone', async () => {
    const { store } = fakeStore([real]);
    const auth = new ApiKeyAuthenticator(store, createLogger({ level: 'silent' }));
    expect((await auth.principalFor('k0'))?.name).toBe('key0');
    expect(await auth.principalFor('k9')).toBeUndefined();
  });
});
