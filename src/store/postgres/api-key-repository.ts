import { asc, eq, inArray } from 'drizzle-orm';
import { apiKeys } from '../../../db/postgres/schema.js';
import type { ApiKey, ApiKeyAccess, ApiKeyRepository } from '../../grants/ports.js';
import { apiKeyNameTaken, apiKeyValues, toApiKey, toHashedApiKey } from '../rows.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

/** Bearer keys for the HTTP API on PostgreSQL, stored only as SHA-256 hashes (hex). */
export class PostgresApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: PgDb) {}

  async create(input: { name: string; keyHash: string; now: number } & ApiKeyAccess): Promise<ApiKey> {
    const [row] = await guarded(() =>
      this.db
        .insert(apiKeys)
        .values(apiKeyValues(input))
        // Two replicas creating one name at once: the second is told, not handed a constraint error.
        .onConflictDoNothing({ target: apiKeys.name })
        .returning(),
    );
    if (!row) throw apiKeyNameTaken(input.name);
    return toApiKey(row);
  }

  async findByName(name: string): Promise<ApiKey | undefined> {
    return guarded(async () => {
      const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.name, name));
      return row && toApiKey(row);
    });
  }

  async findById(id: string): Promise<ApiKey | undefined> {
    return guarded(async () => {
      const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.id, id));
      return row && toApiKey(row);
    });
  }

  async findByHash(keyHash: string): Promise<(ApiKey & { keyHash: string }) | undefined> {
    return guarded(async () => {
      const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.keyHash, keyHash));
      return row && toHashedApiKey(row);
    });
  }

  async list(): Promise<ApiKey[]> {
    return guarded(async () =>
      (await this.db.select().from(apiKeys).orderBy(asc(apiKeys.name))).map(toApiKey),
    );
  }

  async listWithHashes(): Promise<Array<ApiKey & { keyHash: string }>> {
    return guarded(async () =>
      (await this.db.select().from(apiKeys).orderBy(asc(apiKeys.name))).map(toHashedApiKey),
    );
  }

  async remove(name: string): Promise<boolean> {
    return guarded(async () => (await this.db.delete(apiKeys).where(eq(apiKeys.name, name))).rowCount === 1);
  }

  async touch(ids: readonly string[], at: number): Promise<void> {
    if (ids.length === 0) return;
    await guarded(() =>
      this.db
        .update(apiKeys)
        .set({ lastUsedAt: at })
        .where(inArray(apiKeys.id, [...ids])),
    );
  }
}
