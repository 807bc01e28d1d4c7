import { createHash, randomBytes } from 'node:crypto';
import { and, eq, gt, lte } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import { type ApiSessionRow, apiSessions } from '../../db/schema.js';

/** 32 random bytes, base64url: what the session cookie carries. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Only the hash is stored, so a copy of the db opens no browser session. */
export function hashSessionId(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('hex');
}

export interface CreatedApiSession {
  row: ApiSessionRow;
  /** The session id in clear: it exists only in the cookie. */
  id: string;
}

/** Browser sessions of the grants page and queue dashboard, each bound to the API key that opened it. */
export class ApiSessionStore {
  constructor(private readonly db: Db) {}

  create(input: { apiKeyId: string; now: number; ttlMs: number }): CreatedApiSession {
    const id = randomBytes(32).toString('base64url');
    const row = this.db
      .insert(apiSessions)
      .values({
        idHash: hashSessionId(id),
        apiKeyId: input.apiKeyId,
        createdAt: input.now,
        expiresAt: input.now + input.ttlMs,
      })
      .returning()
      .get();
    return { row, id };
  }

  /** The live session with this id; an expired one is as good as none. */
  find(id: string, now: number): ApiSessionRow | undefined {
    if (!SESSION_ID_PATTERN.test(id)) return undefined;
    return this.db
      .select()
      .from(apiSessions)
      .where(and(eq(apiSessions.idHash, hashSessionId(id)), gt(apiSessions.expiresAt, now)))
      .get();
  }

  remove(id: string): boolean {
    return (
      this.db
        .delete(apiSessions)
        .where(eq(apiSessions.idHash, hashSessionId(id)))
        .run().changes === 1
    );
  }

  /** Deletes every expired session; returns how many. */
  purgeExpired(now: number): number {
    return this.db.delete(apiSessions).where(lte(apiSessions.expiresAt, now)).run().changes;
  }
}
