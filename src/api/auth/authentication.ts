import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { refuse } from '../errors.js';
import type { ApiKeyAuthenticator, Principal } from './api-key-authenticator.js';
import type { BrowserSession, BrowserSessions } from './browser-sessions.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; null until the authentication plugin has admitted the request. */
    principal: Principal | null;
    /** Set when the request was authenticated by the session cookie rather than a bearer key. */
    browserSession: BrowserSession | null;
  }
}

export interface AuthenticationOptions {
  keys: ApiKeyAuthenticator;
  sessions: BrowserSessions;
  /** The session id the request's cookie carries. */
  sessionId: (req: FastifyRequest) => string | undefined;
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
 * Every route of the scope that registers this plugin needs an API key: a bearer key, or else the
 * browser session cookie. A request that sends an Authorization header is judged by it alone, never
 * by a cookie riding along. fastify-plugin lets the hook reach the registering scope's routes.
 */
export const authentication = fp<AuthenticationOptions>(
  async (scope, { keys, sessions, sessionId }) => {
    scope.decorateRequest('principal', null);
    scope.decorateRequest('browserSession', null);
    scope.addHook('onRequest', async (req, reply) => {
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
    });
  },
  { name: 'grantkeeper-authentication', fastify: '5.x' },
);

/** The caller of a route inside the authenticated scope. */
export function principalOf(req: Pick<FastifyRequest, 'principal'>): Principal {
  if (!req.principal) throw UNAUTHORIZED;
  return req.principal;
}

/** An onRequest hook after authentication: only admin keys pass. */
export async function requireAdmin(req: FastifyRequest, reply: FastifyReply) {
  if (req.principal?.role !== 'admin') return refuse(reply, ADMIN_ONLY);
}
