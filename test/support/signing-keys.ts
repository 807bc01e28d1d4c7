import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestSigningKey {
  /** PKCS#8 PEM, as a key file holds it. */
  pem: string;
  publicKey: KeyObject;
  /** The public key as a JWK with its kid, as a server's registered JWKS holds it. */
  publicJwk: Record<string, unknown>;
}

/** A fresh key pair of the kind a service account or app registration uses. */
export function generateSigningKey(
  type: 'rsa' | 'ec' | 'ec-p384' = 'rsa',
  kid = `kid-${type}`,
): TestSigningKey {
  const pair =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: type === 'ec' ? 'P-256' : 'P-384' });
  return {
    pem: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey: pair.publicKey,
    publicJwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, use: 'sig' },
  };
}

/** A self-signed certificate for the key (as `az ad app credential` uploads), made by openssl. */
export function selfSignedCertificate(keyPem: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gk-cert-'));
  try {
    const keyFile = join(dir, 'key.pem');
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    return execFileSync(
      'openssl',
      ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=grantkeeper-test', '-days', '1'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes files into a fresh folder; returns their paths by name, and a way to remove them. */
export function writeTempFiles(files: Record<string, string>): {
  path(name: string): string;
  remove(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'gk-files-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text, { mode: 0o600 });
  return { path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}
