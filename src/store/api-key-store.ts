import { createHash, randomBytes } from 'node:crypto';
import { asc, eq, inArray } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import { type ApiKeyRow, apiKeys } from '../../db/schema.js';
import { UserError } from '../errors/user-error.js';

/** Recognisable in config files and secret scanners; the rest is 32 random bytes. */
export const API_KEY_PREFIX = 'gk_';

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

/** What a key may do: an admin reaches everything; a reader only the tokens and views of its grants. */
export type ApiKeyAccess = { role: 'admin' } | { role: 'reader'; grantIds: string[] };

export interface CreatedApiKey {
  row: ApiKeyRow;
  /** The only time the key exists in clear: shown once, never stored. */
  key: string;
}

/** Bearer keys for the HTTP API, stored as SHA-256 hashes (hex). */
export class ApiKeyStore {
  constructor(private readonly db: Db) {}

  create(input: { name: string; now: number } & ApiKeyAccess): CreatedApiKey {
    // A reader of nothing is a mistake, and an unlimited reader would be an admin by another name.
    const grantIds = input.role === 'reader' ? input.grantIds : null;
    if (grantIds?.length === 0) throw new UserError('a reader key needs at least one grant');
    if (this.findByName(input.name)) throw new UserError(`an API key named "${input.name}" already exists`);
    const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
    const row = this.db
      .insert(apiKeys)
      .values({
        id: `k_${randomBytes(9).toString('base64url')}`,
        name: input.name,
        keyHash: hashApiKey(key).toString('hex'),
        role: input.role,
        grantIds,
        createdAt: input.now,
        lastUsedAt: null,
      })
      .returning()
      .get();
    return { row, key };
  }

  findByName(name: string): ApiKeyRow | undefined {
    return this.db.select().from(apiKeys).where(eq(apiKeys.name, name)).get();
  }

  findById(id: string): ApiKeyRow | undefined {
    return this.db.select().from(apiKeys).where(eq(apiKeys.id, id)).get();
  }

  findByHash(hexHash: string): ApiKeyRow | undefined {
    return this.db.select().from(apiKeys).where(eq(apiKeys.keyHash, hexHash)).get();
  }

  list(): ApiKeyRow[] {
    return this.db.select().from(apiKeys).orderBy(asc(apiKeys.name)).all();
  }

  /** Deletes the key; its browser sessions go with it (api_sessions cascades). */
  remove(name: string): boolean {
    return this.db.delete(apiKeys).where(eq(apiKeys.name, name)).run().changes === 1;
  }

  /** One write per flush for every key used since the last one, instead of one per request. */
  touch(ids: string[], at: number): void {
    if (ids.length === 0) return;
    this.db.update(apiKeys).set({ lastUsedAt: at }).where(inArray(apiKeys.id, ids)).run();
  }
}
