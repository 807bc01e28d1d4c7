import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SessionRepository } from '../../grants/ports.js';
import type { ApiKeyAuthenticator, Principal } from './api-key-authenticator.js';

/** 32 random bytes, base64url: what the session cookie carries. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Only the hash is stored, so a copy of the db opens no browser session. */
export function hashSessionId(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('hex');
}

export const SESSION_COOKIE = 'grantkeeper_session';
/** A working day: long enough not to nag an operator, short enough that a forgotten tab expires. */
export const SESSION_TTL_MS = 12 * 3600 * 1000;
/** A header no other site can make a browser send to us without a CORS preflight, which we never grant. */
export const CSRF_HEADER = 'x-grantkeeper-csrf';

export interface BrowserSession {
  /** The id in clear, as the cookie carries it. */
  id: string;
  principal: Principal;
  /** The proof of same-origin our own pages send with every write. */
  csrfToken: string;
  expiresAt: number;
}

/**
 * Browser sessions opened by signing in with an API key. The cookie carries a random id, never the
 * key; the row holds only its hash and the key's id, so revoking the key ends its sessions.
 */
export class BrowserSessions {
  constructor(
    private readonly store: SessionRepository,
    private readonly keys: ApiKeyAuthenticator,
    private readonly now: () => number = Date.now,
  ) {}

  /** Opens a session for a key typed into the sign-in form; undefined when it is not a key. */
  async signIn(presentedKey: string): Promise<BrowserSession | undefined> {
    const principal = await this.keys.authenticate(presentedKey);
    if (!principal) return undefined;
    const now = this.now();
    // Signing in writes anyway: the moment to drop sessions that ran out.
    await this.store.purgeExpired(now);
    const id = randomBytes(32).toString('base64url');
    const expiresAt = now + SESSION_TTL_MS;
    await this.store.create({
      idHash: hashSessionId(id),
      apiKeyId: principal.keyId,
      createdAt: now,
      expiresAt,
    });
    return { id, principal, csrfToken: csrfTokenFor(id), expiresAt };
  }

  /** The live session a cookie names, while its key still exists. */
  async resume(id: string | undefined): Promise<BrowserSession | undefined> {
    if (!id || !SESSION_ID_PATTERN.test(id)) return undefined;
    const row = await this.store.findLive(hashSessionId(id), this.now());
    const principal = row && (await this.keys.principalFor(row.apiKeyId));
    if (!row || !principal) return undefined;
    return { id, principal, csrfToken: csrfTokenFor(id), expiresAt: row.expiresAt };
  }

  async signOut(session: BrowserSession): Promise<void> {
    await this.store.remove(hashSessionId(session.id));
  }
}

/**
 * Derived from the session id, so nothing more is stored, and distinct from the stored hash, so a
 * copy of the db yields no token.
 */
export function csrfTokenFor(sessionId: string): string {
  return createHmac('sha256', sessionId).update('grantkeeper csrf v1').digest('base64url');
}

export function csrfTokenMatches(session: BrowserSession, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  const expected = Buffer.from(session.csrfToken);
  const given = Buffer.from(presented);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
