import { eq } from 'drizzle-orm';
import { meta } from '../../../db/sqlite/schema.js';
import type { ServiceStateRepository } from '../../grants/ports.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

/** Small facts about the service in the `meta` table, with an atomic compare-and-set. */
export class SqliteServiceStateRepository implements ServiceStateRepository {
  constructor(private readonly db: Db) {}

  async get(key: string): Promise<string | null> {
    return guarded(() => this.db.select().from(meta).where(eq(meta.key, key)).get()?.value ?? null);
  }

  async compareAndSet(key: string, from: string | null, to: string | null): Promise<boolean> {
    return guarded(() =>
      this.db.transaction((tx) => {
        const current = tx.select().from(meta).where(eq(meta.key, key)).get()?.value ?? null;
        if (current !== from) return false;
        if (to === null) tx.delete(meta).where(eq(meta.key, key)).run();
        else if (current === null) tx.insert(meta).values({ key, value: to }).run();
        else tx.update(meta).set({ value: to }).where(eq(meta.key, key)).run();
        return true;
      }),
    );
  }
}
