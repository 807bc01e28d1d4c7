import type { FastifyReply, FastifyRequest } from 'fastify';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { refuse } from '../errors.js';
import type { ApiKeyAuthenticator, Principal } from './api-key-authenticator.js';
import type { BrowserSession, BrowserSessions } from './browser-sessions.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    /** Set when the request was authenticated by the session cookie rather than a bearer key. */
    browserSession?: BrowserSession;
  }
}

const UNAUTHORIZED = new GrantkeeperError(
  'unauthorized',
  'a valid API key is required (Authorization: Bearer gk_…)',
);
const ADMIN_ONLY = new GrantkeeperError(
  'forbidden',
  'this API key may only read its grants: writes and the queue dashboard need an admin key',
);

/**
 * An onRequest hook: a bearer key, or else the browser session cookie. A request that sends an
 * Authorization header is judged by it alone, never by a cookie riding along.
 */
export function authenticateRequest(
  keys: ApiKeyAuthenticator,
  sessions: BrowserSessions,
  sessionId: (req: FastifyRequest) => string | undefined,
) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const principal = header.startsWith('Bearer ')
        ? await keys.authenticate(header.slice(7).trim())
        : undefined;
      if (!principal) return refuse(reply, UNAUTHORIZED);
      req.principal = principal;
      return;
    }
    const session = await sessions.resume(sessionId(req));
    if (!session) return refuse(reply, UNAUTHORIZED);
    req.principal = session.principal;
    req.browserSession = session;
  };
}

/** An onRequest hook after authentication: only admin keys pass. */
export async function requireAdmin(req: FastifyRequest, reply: FastifyReply) {
  if (req.principal?.role !== 'admin') return refuse(reply, ADMIN_ONLY);
}
