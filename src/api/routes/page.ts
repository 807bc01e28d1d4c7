import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { type BrowserSessions, SESSION_COOKIE, SESSION_TTL_MS } from '../auth/browser-sessions.js';
import { browserWriteProblem, crossSiteRefusal, signInProblem } from '../guards/request-guards.js';
import { grantsPageCsp, renderGrantsPage, renderLoginPage } from '../page/grants-page.js';
import { loginBody } from '../schemas.js';

export interface SessionRouteDeps {
  sessions: BrowserSessions;
  /** The session id the request's cookie carries. */
  sessionId: (req: FastifyRequest) => string | undefined;
}

/**
 * The grants page and its sign-in: the key travels only in the body of `POST /login` (never in a
 * URL), and the cookie that comes back carries a server-side session id, never the key.
 */
export function registerSessionRoutes(server: FastifyInstance, { sessions, sessionId }: SessionRouteDeps) {
  const page = (reply: FastifyReply) => {
    const nonce = randomBytes(16).toString('base64');
    reply
      .header('content-security-policy', grantsPageCsp(nonce))
      .header('cache-control', 'no-store')
      .type('text/html');
    return nonce;
  };

  // Without a session it shows the sign-in form. A `?key=` (how one signed in once) signs nobody in:
  // it is sent away to the bare URL, so the key at least leaves the address bar.
  server.get<{ Querystring: Record<string, unknown> }>(
    '/',
    { schema: { hide: true } },
    async (req, reply) => {
      if ('key' in req.query) return reply.redirect('./', 303);
      const nonce = page(reply);
      const session = await sessions.resume(sessionId(req));
      if (!session) return reply.code(401).send(renderLoginPage(nonce, false));
      return renderGrantsPage(nonce, {
        csrfToken: session.csrfToken,
        admin: session.principal.role === 'admin',
      });
    },
  );

  const typed = server.withTypeProvider<ZodTypeProvider>();
  typed.post('/login', { schema: { hide: true, body: loginBody } }, async (req, reply) => {
    // No session yet, so no token to check; but a page on another port must not sign this browser
    // in (to a key of its choosing).
    const problem = signInProblem(req);
    if (problem) throw crossSiteRefusal(problem);
    const nonce = page(reply);
    const session = await sessions.signIn(req.body.key);
    if (!session) return reply.code(401).send(renderLoginPage(nonce, true));
    return reply
      .setCookie(SESSION_COOKIE, session.id, {
        path: '/',
        httpOnly: true,
        sameSite: 'strict',
        maxAge: SESSION_TTL_MS / 1000,
      })
      .redirect('./', 303);
  });

  server.post('/logout', { schema: { hide: true } }, async (req, reply) => {
    const session = await sessions.resume(sessionId(req));
    if (session) {
      const problem = browserWriteProblem(req, session, { csrfToken: true });
      if (problem) throw crossSiteRefusal(problem);
      await sessions.signOut(session);
    }
    return reply.clearCookie(SESSION_COOKIE, { path: '/' }).code(204).send();
  });
}
