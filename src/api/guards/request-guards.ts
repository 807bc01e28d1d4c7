import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { AllowedHost } from '../../config/config-schema.js';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { type BrowserSession, CSRF_HEADER, csrfTokenMatches } from '../auth/browser-sessions.js';
import { refuse } from '../errors.js';
import { HostAllowList } from './host-allow-list.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Probes and scrapers reach the pod by IP: these routes answer any Host header. */
    anyHost?: boolean;
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

// 421 Misdirected Request rather than 400: the request is well formed, it names an authority this
// server does not answer for, and clients and proxies read 421 as exactly that.
const MISDIRECTED = new GrantkeeperError(
  'misdirected_request',
  'this server does not answer for that Host header (allow more with GRANTKEEPER_API_ALLOWED_HOSTS)',
);

/**
 * Every answer's guards, for the whole server (fastify-plugin lets them out of this plugin's
 * scope): Host headers outside the allow-list are refused (DNS rebinding), and every answer gets
 * the security headers.
 */
export const requestGuards = fp<{ bind: string; allowed: readonly AllowedHost[] }>(
  async (server, host) => {
    // The port is known once listening (0 picks one), so the allow-list is built on first use.
    let allowList: HostAllowList | undefined;
    const allows = (header: string | undefined) => {
      const address = server.server.address();
      allowList ??= new HostAllowList(
        host.bind,
        typeof address === 'object' && address ? address.port : 0,
        host.allowed,
      );
      return allowList.allows(header);
    };
    server.addHook('onRequest', async (req, reply) => {
      if (req.routeOptions.config.anyHost || allows(req.headers.host)) return;
      return refuse(reply, MISDIRECTED);
    });
    server.addHook('onSend', securityHeaders);
  },
  { name: 'grantkeeper-request-guards', fastify: '5.x' },
);

/** This server's origin as the browser sees it; the Host header has passed the allow-list. */
export function ownOrigin(req: FastifyRequest): string {
  return `${req.protocol}://${req.host}`.toLowerCase();
}

/**
 * Why a browser request cannot be shown to come from our own pages (undefined: it can). Every port
 * on 127.0.0.1 is the same *site*, so SameSite cookies do not tell; the exact origin does.
 */
export function crossOriginProblem(req: FastifyRequest): string | undefined {
  if (req.headers.origin !== ownOrigin(req)) return `the Origin header must be ${ownOrigin(req)}`;
  return fetchSiteProblem(req);
}

/**
 * The sign-in form, before any session exists. Our pages send no referrer, so a browser's form POST
 * from them says `Origin: null`; Sec-Fetch-Site (which no page can set) then tells where it came
 * from. A client without either (curl) has no ambient authority to abuse.
 */
export function signInProblem(req: FastifyRequest): string | undefined {
  const origin = req.headers.origin;
  const fromOurPage = origin === 'null' && req.headers['sec-fetch-site'] === 'same-origin';
  if (origin !== undefined && origin !== ownOrigin(req) && !fromOurPage) {
    return `the Origin header must be ${ownOrigin(req)}`;
  }
  return fetchSiteProblem(req);
}

function fetchSiteProblem(req: FastifyRequest): string | undefined {
  const site = req.headers['sec-fetch-site'];
  return site === undefined || site === 'same-origin' ? undefined : 'Sec-Fetch-Site must be same-origin';
}

/**
 * Why a cookie-authenticated write is refused (undefined: it is not). It must prove it comes from
 * our own origin and, on our own routes, carry the session's CSRF token; the dashboard's UI cannot
 * send our header, so its routes rely on the origin alone.
 */
export function browserWriteProblem(
  req: FastifyRequest,
  session: BrowserSession,
  options: { csrfToken: boolean },
): string | undefined {
  return (
    crossOriginProblem(req) ??
    (options.csrfToken && !csrfTokenMatches(session, req.headers[CSRF_HEADER])
      ? `the ${CSRF_HEADER} header is missing or wrong`
      : undefined)
  );
}

export function crossSiteRefusal(problem: string): GrantkeeperError {
  return new GrantkeeperError('cross_site_request', `refused a browser request: ${problem}`);
}

/** An onRequest hook after authentication. Bearer requests carry no ambient authority: exempt. */
export function browserWriteGuard(options: { csrfToken: boolean }) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const session = req.browserSession;
    if (!session || SAFE_METHODS.has(req.method)) return;
    const problem = browserWriteProblem(req, session, options);
    if (problem) return refuse(reply, crossSiteRefusal(problem));
  };
}

/** An onSend hook: no page of ours may be framed, sniffed or leak its URL to another site. */
async function securityHeaders(_req: FastifyRequest, reply: FastifyReply, payload: unknown) {
  reply.header('x-content-type-options', 'nosniff').header('referrer-policy', 'no-referrer');
  if (String(reply.getHeader('content-type') ?? '').startsWith('text/html')) {
    reply.header('x-frame-options', 'DENY');
    const csp = reply.getHeader('content-security-policy');
    if (typeof csp !== 'string') reply.header('content-security-policy', "frame-ancestors 'none'");
    else if (!csp.includes('frame-ancestors'))
      reply.header('content-security-policy', `${csp}; frame-ancestors 'none'`);
  }
  return payload;
}
