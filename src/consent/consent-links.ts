import { createHash, randomBytes } from 'node:crypto';
import type { ErrorCode } from '../errors/error-codes.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Grant } from '../grants/grant.js';
import type {
  ClientRepository,
  ConsentLink,
  ConsentLinkRepository,
  GrantRepository,
  Store,
} from '../grants/ports.js';
import { TokenEndpointError } from '../oauth/token-errors.js';
import { plainText } from '../util/plain-text.js';
import { buildAuthorizationRequest } from './authorization-request.js';
import { ConsentError, describeAuthorizationError } from './callback.js';
import { labelProblem } from './grant-label.js';
import { type ConsentStoreDeps, completeCodeConsent, type SeedResult } from './seed-grant.js';

/** A link's token and a request's state: 32 random bytes, base64url. */
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;
export const DEFAULT_LINK_TTL_MS = 24 * 3600_000;
export const MIN_LINK_TTL_MS = 5 * 60_000;
export const MAX_LINK_TTL_MS = 30 * 24 * 3600_000;
/** How long the person has at the provider's pages before the redirect back is refused. */
const AUTHORIZATION_TTL_MS = 15 * 60_000;
/** Expired links are kept a while, so an old link says "expired" rather than "unknown". */
const KEEP_EXPIRED_MS = 7 * 24 * 3600_000;

export const CALLBACK_PATH = '/callback';
export const CONNECT_PATH = '/connect';

const randomSecret = () => randomBytes(32).toString('base64url');
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

/** What refuses a link or a redirect: codes of the error vocabulary. */
type ConsentLinkFailure = Extract<
  ErrorCode,
  | 'bad_request'
  | 'not_found'
  | 'malformed_link'
  | 'bad_state'
  | 'unknown_state'
  | 'missing_code'
  | 'wrong_issuer'
  | 'authorization_refused'
  | 'unknown_link'
  | 'consent_refused'
  | 'label_taken'
  | 'no_public_url'
  | 'link_used'
  | 'link_expired'
  | 'exchange_failed'
>;

/** Why a link or a redirect was refused: a stable code and one line for people. */
export class ConsentLinkError extends GrantkeeperError<ConsentLinkFailure> {}

export interface ConsentLinkDeps {
  links: ConsentLinkRepository;
  clients: ClientRepository;
  grants: GrantRepository;
  /** GRANTKEEPER_PUBLIC_URL, without a trailing slash; links cannot be made without it. */
  publicUrl: string | undefined;
  now?: () => number;
}

/** The link deps of a store and the configured public URL. */
export function consentLinkDeps(
  store: Pick<Store, 'consentLinks' | 'clients' | 'grants'>,
  publicUrl: string | undefined,
): ConsentLinkDeps {
  return { links: store.consentLinks, clients: store.clients, grants: store.grants, publicUrl };
}

/** A fresh link: the URL (the only place its token ever is) and what it is bound to. */
export interface ConsentLinkOffer {
  url: string;
  id: string;
  client: string;
  label: string;
  expiresAt: number;
}

/**
 * Makes a one-time link that stores (or re-consents) grant `label` of client `clientName` when the
 * account's owner opens it and consents. Refuses a label that names another client's grant or a
 * grant without a refresh token (nothing to consent to).
 */
export async function createConsentLink(
  deps: ConsentLinkDeps,
  input: { client: string; label: string; ttlMs?: number },
): Promise<ConsentLinkOffer> {
  const publicUrl = requirePublicUrl(deps.publicUrl);
  const badLabel = labelProblem(input.label);
  if (badLabel) throw new ConsentLinkError('bad_request', badLabel);
  const ttlMs = input.ttlMs ?? DEFAULT_LINK_TTL_MS;
  if (!(ttlMs >= MIN_LINK_TTL_MS && ttlMs <= MAX_LINK_TTL_MS)) {
    throw new ConsentLinkError('bad_request', 'a consent link must expire within 5 minutes to 30 days');
  }
  const client = await deps.clients.findByName(input.client);
  if (!client) {
    throw new ConsentLinkError('not_found', `no client is named "${plainText(input.client, 64)}"`);
  }
  const existing = (await deps.grants.find(input.label))?.grant;
  if (existing && existing.clientRef !== client.id) {
    throw new ConsentLinkError(
      'label_taken',
      `grant "${input.label}" belongs to another client: a link for ${client.name} must name another label`,
    );
  }
  if (existing && existing.kind !== 'authorization_code') {
    throw new ConsentLinkError(
      'label_taken',
      `grant "${input.label}" is a ${existing.kind} grant: it has no account to consent, so no link can renew it`,
    );
  }
  return mintLink(deps, publicUrl, { id: client.id, name: client.name }, input.label, ttlMs);
}

/**
 * A fresh link for an existing grant, for a webhook to carry (grant.needs_reconsent, and any other
 * alert asking its account's owner to act): undefined without a public URL, or for a grant that
 * has no account to consent.
 */
async function consentLinkForGrant(
  deps: ConsentLinkDeps,
  grant: Pick<Grant, 'clientRef' | 'label' | 'kind'>,
  ttlMs = DEFAULT_LINK_TTL_MS,
): Promise<ConsentLinkOffer | undefined> {
  if (!deps.publicUrl || grant.kind !== 'authorization_code') return undefined;
  const client = await deps.clients.get(grant.clientRef);
  if (!client) return undefined;
  return mintLink(deps, deps.publicUrl, client, grant.label, ttlMs);
}

async function mintLink(
  deps: ConsentLinkDeps,
  publicUrl: string,
  client: { id: string; name: string },
  label: string,
  ttlMs: number,
): Promise<ConsentLinkOffer> {
  const now = (deps.now ?? Date.now)();
  await deps.links.purgeExpired(now - KEEP_EXPIRED_MS);
  const token = randomSecret();
  const link: ConsentLink = {
    id: `lnk_${randomBytes(9).toString('base64url')}`,
    clientRef: client.id,
    label,
    createdAt: now,
    expiresAt: now + ttlMs,
    usedAt: null,
  };
  await deps.links.create({ ...link, tokenHash: sha256(token) });
  return {
    url: `${publicUrl}${CONNECT_PATH}/${token}`,
    id: link.id,
    client: client.name,
    label,
    expiresAt: link.expiresAt,
  };
}

/** The offer as the API, `link --json` and webhooks show it. */
export function consentLinkView(offer: ConsentLinkOffer) {
  const { expiresAt, ...rest } = offer;
  return { ...rest, expires_at: new Date(expiresAt).toISOString() };
}
export type ConsentLinkPayload = ReturnType<typeof consentLinkView>;

/**
 * What a webhook body carries as `consent_link` for `grant`: a fresh link in its view, or undefined
 * without a public URL. The one call an alert needs (the worker makes it for CONSENT_LINK_EVENTS).
 */
export async function consentLinkPayload(
  deps: ConsentLinkDeps,
  grant: Pick<Grant, 'clientRef' | 'label' | 'kind'>,
): Promise<ConsentLinkPayload | undefined> {
  const offer = await consentLinkForGrant(deps, grant);
  return offer && consentLinkView(offer);
}

function requirePublicUrl(publicUrl: string | undefined): string {
  if (!publicUrl) {
    throw new ConsentLinkError(
      'no_public_url',
      'consent links need the address browsers reach the API at: set GRANTKEEPER_PUBLIC_URL (e.g. https://grantkeeper.example.com)',
    );
  }
  return publicUrl;
}

/**
 * The person opened a link: checks it, records a fresh authorization request (PKCE verifier, state
 * and nonce stay here, server side) and returns the provider URL to send the browser to.
 */
export async function openConsentLink(deps: ConsentLinkDeps, token: string): Promise<string> {
  const now = (deps.now ?? Date.now)();
  const publicUrl = requirePublicUrl(deps.publicUrl);
  if (!SECRET_PATTERN.test(token)) {
    throw new ConsentLinkError(
      'malformed_link',
      'this is not a grantkeeper consent link: check that the whole address was copied',
    );
  }
  const link = await deps.links.findByTokenHash(sha256(token));
  usable(link, now);
  const client = await deps.clients.openById(link.clientRef);
  if (!client) throw new ConsentLinkError('unknown_link', 'the client of this consent link was removed');
  const auth = buildAuthorizationRequest({
    profile: client.profile,
    clientId: client.target.clientId,
    redirectUri: `${publicUrl}${CALLBACK_PATH}`,
    scopes: client.scopes,
    authorizeParams: client.authorizeParams,
  });
  await deps.links.addAuthorization({
    stateHash: sha256(auth.state),
    linkId: link.id,
    codeVerifier: auth.codeVerifier,
    nonce: auth.nonce ?? null,
    redirectUri: auth.redirectUri,
    createdAt: now,
    expiresAt: now + AUTHORIZATION_TTL_MS,
  });
  return auth.url;
}

/** Refuses a link that cannot be used at `now`; the messages are for the person holding it. */
function usable(link: ConsentLink | undefined, now: number): asserts link is ConsentLink {
  if (!link) {
    throw new ConsentLinkError(
      'unknown_link',
      'no such consent link: it may be mistyped, or so old it was removed; ask for a new one',
    );
  }
  if (link.usedAt !== null) {
    throw new ConsentLinkError('link_used', 'this consent link was already used; ask for a new one');
  }
  if (link.expiresAt <= now) {
    throw new ConsentLinkError('link_expired', 'this consent link has expired; ask for a new one');
  }
}

export interface LinkConsentResult extends SeedResult {
  linkId: string;
}

/**
 * The provider's redirect back (RFC 6749 §4.1.2): the state must name a request a link started
 * (taken once), an error is shown in plain words, and the code is exchanged and stored under the
 * link's label, with the link marked used in the same step. Anything refused changes no grant and
 * leaves the link usable.
 */
export async function completeConsentLink(
  deps: ConsentLinkDeps & ConsentStoreDeps,
  query: URLSearchParams,
): Promise<LinkConsentResult> {
  const now = deps.now ?? Date.now;
  const states = query.getAll('state');
  const state = states.length === 1 ? states[0] : undefined;
  if (state === undefined || !SECRET_PATTERN.test(state)) {
    throw new ConsentLinkError(
      'bad_state',
      'this redirect carries no valid state parameter, so it cannot be trusted; open the consent link again',
    );
  }
  const pending = await deps.links.takeAuthorization(sha256(state), now());
  if (!pending) {
    throw new ConsentLinkError(
      'unknown_state',
      'this redirect answers no consent in progress here (stale, already answered or forged); open the consent link again',
    );
  }
  const link = await deps.links.get(pending.linkId);
  usable(link, now());
  const error = query.get('error');
  if (error !== null) {
    throw new ConsentLinkError(
      'authorization_refused',
      `${describeAuthorizationError(error, query.get('error_description'))}; the link can be opened again`,
    );
  }
  const codes = query.getAll('code');
  if (codes.length !== 1 || !codes[0] || !/^[\x21-\x7e]{1,4096}$/.test(codes[0])) {
    throw new ConsentLinkError(
      'missing_code',
      'the redirect carries no authorization code; open the consent link again',
    );
  }
  const client = await deps.clients.openById(link.clientRef);
  if (!client) throw new ConsentLinkError('unknown_link', 'the client of this consent link was removed');
  // RFC 9207: a server that names itself must be the one we sent the person to (mix-up attacks).
  const issuer = query.get('iss');
  if (issuer !== null && client.profile.issuer && issuer !== client.profile.issuer) {
    throw new ConsentLinkError(
      'wrong_issuer',
      'this redirect comes from another authorization server than the one this link uses; open the consent link again',
    );
  }
  try {
    const result = await completeCodeConsent(
      deps,
      client,
      {
        code: codes[0],
        codeVerifier: pending.codeVerifier,
        redirectUri: pending.redirectUri,
        ...(pending.nonce ? { nonce: pending.nonce } : {}),
      },
      {
        label: link.label,
        sameAccountOnly: true,
        beforeSave: async () => {
          if (!(await deps.links.markUsed(link.id, now()))) {
            throw new ConsentLinkError(
              'link_used',
              'this consent link was used meanwhile; nothing was stored',
            );
          }
          return () => deps.links.markUnused(link.id);
        },
      },
      now,
    );
    return { ...result, linkId: link.id };
  } catch (err) {
    if (err instanceof ConsentLinkError) throw err;
    // The provider would not exchange the code: its failure, not the person's.
    if (err instanceof ConsentError && err.cause instanceof TokenEndpointError)
      throw new ConsentLinkError('exchange_failed', err.message);
    if (err instanceof GrantkeeperError) throw new ConsentLinkError('consent_refused', err.message);
    throw err;
  }
}
