import { and, eq } from 'drizzle-orm';
import { meta } from '../../../db/postgres/schema.js';
import type { ServiceStateRepository } from '../../grants/ports.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

/** Small facts about the service in the `meta` table; each move is one conditional statement. */
export class PostgresServiceStateRepository implements ServiceStateRepository {
  constructor(private readonly db: PgDb) {}

  async get(key: string): Promise<string | null> {
    return guarded(
      async () => (await this.db.select().from(meta).where(eq(meta.key, key)))[0]?.value ?? null,
    );
  }

  async compareAndSet(key: string, from: string | null, to: string | null): Promise<boolean> {
    return guarded(async () => {
      if (from === null && to === null) return (await this.get(key)) === null;
      if (from === null && to !== null) {
        const inserted = await this.db
          .insert(meta)
          .values({ key, value: to })
          .onConflictDoNothing()
          .returning();
        return inserted.length === 1;
      }
      const matches = and(eq(meta.key, key), eq(meta.value, from as string));
      const changed =
        to === null
          ? await this.db.delete(meta).where(matches)
          : await this.db.update(meta).set({ value: to }).where(matches);
      return changed.rowCount === 1;
    });
  }
}
