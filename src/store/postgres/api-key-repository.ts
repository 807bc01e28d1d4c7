import { randomBytes } from 'node:crypto';
import { asc, eq, inArray } from 'drizzle-orm';
import { apiKeys } from '../../../db/postgres/schema.js';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import type { ApiKey, ApiKeyAccess, ApiKeyRepository } from '../../grants/ports.js';
import { toApiKey } from '../rows.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

/** Bearer keys for the HTTP API on PostgreSQL, stored only as SHA-256 hashes (hex). */
export class PostgresApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: PgDb) {}

  async create(input: { name: string; keyHash: string; now: number } & ApiKeyAccess): Promise<ApiKey> {
    const [row] = await guarded(() =>
      this.db
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
        // Two replicas creating one name at once: the second is told, not handed a constraint error.
        .onConflictDoNothing({ target: apiKeys.name })
        .returning(),
    );
    if (!row) throw new GrantkeeperError('name_taken', `an API key named "${input.name}" already exists`);
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
      return row && { ...toApiKey(row), keyHash: row.keyHash };
    });
  }

  async list(): Promise<ApiKey[]> {
    return guarded(async () =>
      (await this.db.select().from(apiKeys).orderBy(asc(apiKeys.name))).map(toApiKey),
    );
  }

  async listWithHashes(): Promise<Array<ApiKey & { keyHash: string }>> {
    return guarded(async () =>
      (await this.db.select().from(apiKeys).orderBy(asc(apiKeys.name))).map((row) => ({
        ...toApiKey(row),
        keyHash: row.keyHash,
      })),
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
