import { randomBytes } from 'node:crypto';
import { asc, eq, inArray } from 'drizzle-orm';
import { apiKeys } from '../../../db/sqlite/schema.js';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import type { ApiKey, ApiKeyAccess, ApiKeyRepository } from '../../grants/ports.js';
import { toApiKey } from '../rows.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

/** Bearer keys for the HTTP API on SQLite, stored only as SHA-256 hashes (hex). */
export class SqliteApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: Db) {}

  async create(input: { name: string; keyHash: string; now: number } & ApiKeyAccess): Promise<ApiKey> {
    return guarded(() => {
      if (this.db.select().from(apiKeys).where(eq(apiKeys.name, input.name)).get()) {
        throw new GrantkeeperError('name_taken', `an API key named "${input.name}" already exists`);
      }
      const row = this.db
        .insert(apiKeys)
        .values({
          id: `k_${randomBytes(9).toString('base64url')}`,
          name: input.name,
          keyHash: input.keyHash,
          role: input.role,
          grantIds: input.role === 'reader' ? input.grantIds : null,
          createdAt: input.now,
          lastUsedAt: null,
        })
        .returning()
        .get();
      return toApiKey(row);
    });
  }

  async findByName(name: string): Promise<ApiKey | undefined> {
    return guarded(() => {
      const row = this.db.select().from(apiKeys).where(eq(apiKeys.name, name)).get();
      return row && toApiKey(row);
    });
  }

  async findById(id: string): Promise<ApiKey | undefined> {
    return guarded(() => {
      const row = this.db.select().from(apiKeys).where(eq(apiKeys.id, id)).get();
      return row && toApiKey(row);
    });
  }

  async findByHash(keyHash: string): Promise<(ApiKey & { keyHash: string }) | undefined> {
    return guarded(() => {
      const row = this.db.select().from(apiKeys).where(eq(apiKeys.keyHash, keyHash)).get();
      return row && { ...toApiKey(row), keyHash: row.keyHash };
    });
  }

  async list(): Promise<ApiKey[]> {
    return guarded(() => this.db.select().from(apiKeys).orderBy(asc(apiKeys.name)).all().map(toApiKey));
  }

  async listWithHashes(): Promise<Array<ApiKey & { keyHash: string }>> {
    return guarded(() =>
      this.db
        .select()
        .from(apiKeys)
        .orderBy(asc(apiKeys.name))
        .all()
        .map((row) => ({ ...toApiKey(row), keyHash: row.keyHash })),
    );
  }

  async remove(name: string): Promise<boolean> {
    return guarded(() => this.db.delete(apiKeys).where(eq(apiKeys.name, name)).run().changes === 1);
  }

  async touch(ids: readonly string[], at: number): Promise<void> {
    if (ids.length === 0) return;
    guarded(() =>
      this.db
        .update(apiKeys)
        .set({ lastUsedAt: at })
        .where(inArray(apiKeys.id, [...ids]))
        .run(),
    );
  }
}
