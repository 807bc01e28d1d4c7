import { asc, eq, inArray } from 'drizzle-orm';
import { apiKeys } from '../../../db/sqlite/schema.js';
import type { ApiKey, ApiKeyAccess, ApiKeyRepository } from '../../grants/ports.js';
import { apiKeyNameTaken, apiKeyValues, toApiKey, toHashedApiKey } from '../rows.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

/** Bearer keys for the HTTP API on SQLite, stored only as SHA-256 hashes (hex). */
export class SqliteApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: Db) {}

  async create(input: { name: string; keyHash: string; now: number } & ApiKeyAccess): Promise<ApiKey> {
    return guarded(() => {
      if (this.db.select().from(apiKeys).where(eq(apiKeys.name, input.name)).get()) {
        throw apiKeyNameTaken(input.name);
      }
      const row = this.db.insert(apiKeys).values(apiKeyValues(input)).returning().get();
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
      return row && toHashedApiKey(row);
    });
  }

  async list(): Promise<ApiKey[]> {
    return guarded(() => this.db.select().from(apiKeys).orderBy(asc(apiKeys.name)).all().map(toApiKey));
  }

  async listWithHashes(): Promise<Array<ApiKey & { keyHash: string }>> {
    return guarded(() => this.db.select().from(apiKeys).orderBy(asc(apiKeys.name)).all().map(toHashedApiKey));
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
