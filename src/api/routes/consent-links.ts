import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  CALLBACK_PATH,
  CONNECT_PATH,
  ConsentLinkError,
  completeConsentLink,
  consentLinkDeps,
  consentLinkView,
  createConsentLink,
  DEFAULT_LINK_TTL_MS,
  MAX_LINK_TTL_MS,
  MIN_LINK_TTL_MS,
  openConsentLink,
} from '../../consent/consent-links.js';
import type { Logger } from '../../log/logger.js';
import { consentDeps } from '../../service/refresh-engine.js';
import type { RefreshService } from '../../service/refresh-service.js';
import type { StoreContext } from '../../service/store-context.js';
import { escapeHtml } from '../../util/html.js';
import { requireAdmin } from '../auth/authentication.js';
import { errorResponses } from '../schemas.js';

export interface ConsentLinkRouteDeps {
  app: StoreContext;
  engine: RefreshService['engine'];
  publicUrl: string | undefined;
  logger: Logger;
}

const linksDeps = ({ app, publicUrl }: ConsentLinkRouteDeps) => consentLinkDeps(app, publicUrl);

/**
 * The pages a consent link's holder sees, with no API key: GET /connect/:token sends the browser to
 * the provider, GET /callback is where the provider sends it back. Neither logs the token, the
 * state or the code (fastify's request logging is off; our lines name the link id only).
 */
export function registerConsentLinkPages(server: FastifyInstance, deps: ConsentLinkRouteDeps): void {
  const { engine, logger } = deps;
  // No schema: a malformed token gets the same refusal page as an unknown one, not a JSON error.
  server.get<{ Params: { token: string } }>(`${CONNECT_PATH}/:token`, async (req, reply) => {
    const { token } = req.params;
    try {
      const location = await openConsentLink(linksDeps(deps), token);
      return reply.code(302).header('cache-control', 'no-store').header('location', location).send();
    } catch (err) {
      return refusalPage(reply, err);
    }
  });

  server.get(CALLBACK_PATH, async (req, reply) => {
    const query = new URLSearchParams(req.url.slice(req.url.indexOf('?') + 1 || req.url.length));
    try {
      const result = await completeConsentLink({ ...linksDeps(deps), ...consentDeps(engine) }, query);
      logger.info(
        { link: result.linkId, grant: result.grant.id, replaced: result.replaced },
        'consent link stored a grant',
      );
      const what = result.replaced ? 'renewed' : 'stored';
      return page(
        reply,
        200,
        'Done',
        `grantkeeper ${what} the grant "${result.grant.label}". You can close this tab.`,
      );
    } catch (err) {
      return refusalPage(reply, err);
    }
  });
}

const linkBody = z
  .object({
    client: z.string().min(1).max(64).describe('the client name (grantkeeper client list)'),
    label: z.string().min(1).max(128).describe('the grant this link stores or renews'),
    expires_in: z
      .number()
      .int()
      .min(MIN_LINK_TTL_MS / 1000)
      .max(MAX_LINK_TTL_MS / 1000)
      .default(DEFAULT_LINK_TTL_MS / 1000)
      .describe('seconds until the link expires (default a day)'),
  })
  .strict();

const linkView = z.object({
  url: z.string().describe('open once, in any browser: the only copy of the link token'),
  id: z.string(),
  client: z.string(),
  label: z.string(),
  expires_at: z.string().describe('ISO 8601'),
});

/** POST /v1/links (admin keys): a one-time consent link for programs, as `grantkeeper link` prints. */
export function registerConsentLinkApi(parent: FastifyInstance, deps: ConsentLinkRouteDeps): void {
  parent.withTypeProvider<ZodTypeProvider>().post(
    '/v1/links',
    {
      onRequest: requireAdmin,
      schema: {
        tags: ['links'],
        security: [{ apiKey: [] }],
        summary:
          "A one-time consent link: the account's owner opens it, consents at the provider, and the grant is stored under `label` (admin keys)",
        body: linkBody,
        response: { 201: linkView, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (req, reply) => {
      const { body } = req;
      // A refusal is a GrantkeeperError: the error handler answers its code.
      const offer = await createConsentLink(linksDeps(deps), {
        client: body.client,
        label: body.label,
        ttlMs: body.expires_in * 1000,
      });
      reply.code(201).header('cache-control', 'no-store');
      return consentLinkView(offer);
    },
  );
}

/** A refused link or redirect: its own status and line; anything else goes to the error handler. */
function refusalPage(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof ConsentLinkError) return page(reply, err.httpStatus, 'Not completed', err.message);
  throw err;
}

function page(reply: FastifyReply, status: number, heading: string, message: string): FastifyReply {
  const nonce = randomBytes(16).toString('base64');
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src 'nonce-${nonce}'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'`,
    )
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>grantkeeper · ${heading.toLowerCase()}</title>` +
        `<meta name="viewport" content="width=device-width, initial-scale=1">` +
        `<style nonce="${nonce}">body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#1f2937}</style></head>` +
        `<body><h1>${heading}</h1><p id="message">${escapeHtml(message)}</p></body></html>`,
    );
}
