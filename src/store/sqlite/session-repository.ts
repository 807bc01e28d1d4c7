import { and, eq, gt, lte } from 'drizzle-orm';
import { apiSessions } from '../../../db/sqlite/schema.js';
import type { ApiSession, SessionRepository } from '../../grants/ports.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

/** Browser sessions on SQLite: only hashes of their ids. */
export class SqliteSessionRepository implements SessionRepository {
  constructor(private readonly db: Db) {}

  async create(session: ApiSession): Promise<void> {
    guarded(() => this.db.insert(apiSessions).values(session).run());
  }

  async findLive(idHash: string, now: number): Promise<ApiSession | undefined> {
    return guarded(() =>
      this.db
        .select()
        .from(apiSessions)
        .where(and(eq(apiSessions.idHash, idHash), gt(apiSessions.expiresAt, now)))
        .get(),
    );
  }

  async remove(idHash: string): Promise<boolean> {
    return guarded(
      () => this.db.delete(apiSessions).where(eq(apiSessions.idHash, idHash)).run().changes === 1,
    );
  }

  async purgeExpired(now: number): Promise<number> {
    return guarded(() => this.db.delete(apiSessions).where(lte(apiSessions.expiresAt, now)).run().changes);
  }
}
