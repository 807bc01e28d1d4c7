import { createHash, randomBytes } from 'node:crypto';

export interface PkcePair {
  /** 43 characters of base64url from 32 random bytes (RFC 7636 §4.1 allows 43 to 128). */
  verifier: string;
  challenge: string;
  method: 'S256';
}

export function createPkcePair(): PkcePair {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: pkceChallenge(verifier), method: 'S256' };
}

export function pkceChallenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}
