import { createHash, randomBytes } from 'node:crypto';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import type { ApiKey, ApiKeyAccess, ApiKeyRepository } from '../../grants/ports.js';

/** Recognisable in config files and secret scanners; the rest is 32 random bytes. */
export const API_KEY_PREFIX = 'gk_';

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

export interface IssuedApiKey {
  apiKey: ApiKey;
  /** The only time the key exists in clear: shown once, never stored. */
  key: string;
}

/** Makes a new key and stores only its hash. */
export async function issueApiKey(
  keys: ApiKeyRepository,
  input: { name: string; now: number } & ApiKeyAccess,
): Promise<IssuedApiKey> {
  // A reader of nothing is a mistake, and an unlimited reader would be an admin by another name.
  if (input.role === 'reader' && input.grantIds.length === 0) {
    throw new GrantkeeperError('bad_request', 'a reader key needs at least one grant');
  }
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  const apiKey = await keys.create({ ...input, keyHash: hashApiKey(key).toString('hex') });
  return { apiKey, key };
}
