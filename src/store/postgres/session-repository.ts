import { and, eq, gt, lte } from 'drizzle-orm';
import { apiSessions } from '../../../db/postgres/schema.js';
import type { ApiSession, SessionRepository } from '../../grants/ports.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

/** Browser sessions on PostgreSQL: only hashes of their ids. */
export class PostgresSessionRepository implements SessionRepository {
  constructor(private readonly db: PgDb) {}

  async create(session: ApiSession): Promise<void> {
    await guarded(() => this.db.insert(apiSessions).values(session));
  }

  async findLive(idHash: string, now: number): Promise<ApiSession | undefined> {
    return guarded(async () => {
      const [row] = await this.db
        .select()
        .from(apiSessions)
        .where(and(eq(apiSessions.idHash, idHash), gt(apiSessions.expiresAt, now)));
      return row;
    });
  }

  async remove(idHash: string): Promise<boolean> {
    return guarded(
      async () => (await this.db.delete(apiSessions).where(eq(apiSessions.idHash, idHash))).rowCount === 1,
    );
  }

  async purgeExpired(now: number): Promise<number> {
    return guarded(
      async () => (await this.db.delete(apiSessions).where(lte(apiSessions.expiresAt, now))).rowCount ?? 0,
    );
  }
}
