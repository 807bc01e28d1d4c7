import { and, eq } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import { meta } from '../../db/schema.js';

/**
 * Small facts about the service itself kept in the store (the `meta` table), such as which queue
 * transitions have been alerted. A compare-and-swap, so several processes agree on who acts.
 */
export class ServiceStateStore {
  constructor(private readonly db: Db) {}

  get(key: string): string | null {
    return this.db.select().from(meta).where(eq(meta.key, key)).get()?.value ?? null;
  }

  /** Moves `key` from `from` to `to` (null: absent); false when it was not at `from`. */
  compareAndSet(key: string, from: string | null, to: string | null): boolean {
    return this.db.transaction((tx) => {
      const current = tx.select().from(meta).where(eq(meta.key, key)).get()?.value ?? null;
      if (current !== from) return false;
      if (to === null)
        tx.delete(meta)
          .where(and(eq(meta.key, key)))
          .run();
      else if (current === null) tx.insert(meta).values({ key, value: to }).run();
      else tx.update(meta).set({ value: to }).where(eq(meta.key, key)).run();
      return true;
    });
  }
}
