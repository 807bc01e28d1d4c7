import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ApiSessionStore } from '../store/api-session-store.js';
import type { ApiKeyAuthenticator, Principal } from './auth.js';

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
    private readonly store: ApiSessionStore,
    private readonly keys: ApiKeyAuthenticator,
    private readonly now: () => number = Date.now,
  ) {}

  /** Opens a session for a key typed into the sign-in form; undefined when it is not a key. */
  signIn(presentedKey: string): BrowserSession | undefined {
    const principal = this.keys.authenticate(presentedKey);
    if (!principal) return undefined;
    const now = this.now();
    // Signing in writes anyway: the moment to drop sessions that ran out.
    this.store.purgeExpired(now);
    const { id, row } = this.store.create({ apiKeyId: principal.keyId, now, ttlMs: SESSION_TTL_MS });
    return { id, principal, csrfToken: csrfTokenFor(id), expiresAt: row.expiresAt };
  }

  /** The live session a cookie names, while its key still exists. */
  resume(id: string | undefined): BrowserSession | undefined {
    if (!id) return undefined;
    const row = this.store.find(id, this.now());
    const principal = row && this.keys.principalFor(row.apiKeyId);
    if (!row || !principal) return undefined;
    return { id, principal, csrfToken: csrfTokenFor(id), expiresAt: row.expiresAt };
  }

  signOut(session: BrowserSession): void {
    this.store.remove(session.id);
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
