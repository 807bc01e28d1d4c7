import { createHash, X509Certificate } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { certificateThumbprint, parsePrivateKey, pkcs8Pem } from '../../src/crypto/signing-key.js';
import {
  ASSERTION_LIFETIME_SEC,
  clientAuthenticationAssertion,
  signAssertion,
} from '../../src/oauth/client-assertion.js';
import { generateSigningKey, selfSignedCertificate } from '../support/signing-keys.js';

const rsa = generateSigningKey('rsa');
const ec = generateSigningKey('ec');

describe('private keys for assertions', () => {
  it('picks the algorithm from the key type, and keeps one that matches', () => {
    expect(parsePrivateKey(rsa.pem, 'key.pem').alg).toBe('RS256');
    expect(parsePrivateKey(rsa.pem, 'key.pem', 'PS256').alg).toBe('PS256');
    expect(parsePrivateKey(ec.pem, 'key.pem').alg).toBe('ES256');
  });

  it('refuses an algorithm that does not match the key, naming both', () => {
    expect(() => parsePrivateKey(rsa.pem, 'key.pem', 'ES256')).toThrow(
      /--alg ES256 does not match key.pem, an RSA key/,
    );
    expect(() => parsePrivateKey(ec.pem, 'key.pem', 'RS256')).toThrow(
      /--alg RS256 does not match key.pem, a P-256 key/,
    );
    expect(() => parsePrivateKey(generateSigningKey('ec-p384').pem, 'k.pem')).toThrow(
      /secp384r1; ES256 needs P-256/,
    );
  });

  it('refuses what is not a PEM private key, without echoing it', () => {
    for (const text of [
      'just text',
      '{"type":"service_account"}',
      rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    ]) {
      expect(() => parsePrivateKey(text, 'key.pem')).toThrow(/key.pem is not a PEM private key/);
    }
    const damaged = rsa.pem.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!');
    expect(() => parsePrivateKey(damaged, 'key.pem')).toThrow(/not a readable private key/);
    expect(() => parsePrivateKey('-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n', 'key.pem')).toThrow(
      /encrypted/,
    );
  });

  it("computes a certificate's x5t#S256, refusing a certificate of another key", () => {
    const cert = selfSignedCertificate(rsa.pem);
    const { key } = parsePrivateKey(rsa.pem, 'key.pem');
    const expected = createHash('sha256').update(new X509Certificate(cert).raw).digest('base64url');
    expect(certificateThumbprint(cert, key, 'app.crt')).toBe(expected);
    const other = parsePrivateKey(generateSigningKey('rsa').pem, 'other.pem').key;
    expect(() => certificateThumbprint(cert, other, 'app.crt')).toThrow(/app.crt certifies another key/);
    expect(() => certificateThumbprint(rsa.pem, key, 'app.crt')).toThrow(/app.crt is not a PEM certificate/);
  });
});

describe('assertions', () => {
  const key = {
    privateKeyPem: pkcs8Pem(parsePrivateKey(ec.pem, 'k').key),
    alg: 'ES256' as const,
    keyId: 'k1',
    x5tS256: 'thumb',
  };

  it('signs iss = sub = client id, aud = the token endpoint, a minute of life, with kid and x5t#S256', async () => {
    const now = Date.now();
    const jwt = await clientAuthenticationAssertion(key, 'client-1', 'https://as.example/token');
    const { payload } = await jwtVerify(jwt, ec.publicKey, {
      audience: 'https://as.example/token',
      issuer: 'client-1',
    });
    expect(payload.sub).toBe('client-1');
    expect(payload.exp! - payload.iat!).toBe(ASSERTION_LIFETIME_SEC);
    expect(Math.abs(payload.iat! * 1000 - now)).toBeLessThan(5_000);
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'ES256', kid: 'k1', 'x5t#S256': 'thumb' });
  });

  it('uses a fixed audience (the issuer) where the client was registered with one', async () => {
    const jwt = await clientAuthenticationAssertion(
      { ...key, audience: 'https://as.example' },
      'c',
      'https://as.example/token',
    );
    await expect(jwtVerify(jwt, ec.publicKey, { audience: 'https://as.example' })).resolves.toBeTruthy();
  });

  it('never signs two assertions with one jti', async () => {
    const jtis = new Set<unknown>();
    for (let i = 0; i < 20; i++) {
      const jwt = await signAssertion(key, { iss: 'c', sub: 'c', aud: 'a' }, 1_700_000_000_000);
      jtis.add(
        (await jwtVerify(jwt, ec.publicKey, { currentDate: new Date(1_700_000_000_000) })).payload.jti,
      );
    }
    expect(jtis.size).toBe(20);
  });
});
