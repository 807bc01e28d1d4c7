/**
 * The vocabulary every layer shares about a grant: its states, modes, the outcomes of refresh
 * attempts, and the grant itself as the domain sees it (never a sealed value).
 */

/**
 * States a grant moves through; only the first two are refreshed by the worker. `broken` means
 * grantkeeper itself cannot use the grant (its tokens do not open with the loaded keys, or its
 * client was removed): nothing the provider said, and nothing a retry fixes without an operator.
 */
export const GRANT_STATES = ['active', 'failing', 'needs_reconsent', 'client_error', 'broken'] as const;
export type GrantState = (typeof GRANT_STATES)[number];

/** The states the worker keeps refreshing. */
export const LIVE_GRANT_STATES = ['active', 'failing'] as const satisfies readonly GrantState[];
export type LiveGrantState = (typeof LIVE_GRANT_STATES)[number];

export function isLive(state: GrantState): state is LiveGrantState {
  return state === 'active' || state === 'failing';
}

/**
 * `eager` grants are refreshed ahead of every access-token expiry; `keepalive` grants only as often
 * as the provider's idle limit needs, and readers refresh them on demand.
 */
export const GRANT_MODES = ['eager', 'keepalive'] as const;
export type GrantMode = (typeof GRANT_MODES)[number];

/**
 * Where a grant's next token comes from: a user's consent and its refresh token
 * (`authorization_code`), or the client itself, asking again each time (`client_credentials`, RFC
 * 6749 §4.4) or presenting a signed assertion (`jwt_bearer`, RFC 7523 §2.1). Only the first has a
 * refresh token, so only it can need a new consent or be kept alive.
 */
export const GRANT_KINDS = ['authorization_code', 'client_credentials', 'jwt_bearer'] as const;
export type GrantKind = (typeof GRANT_KINDS)[number];
export type ServiceGrantKind = Exclude<GrantKind, 'authorization_code'>;

export function hasRefreshToken(kind: GrantKind): kind is 'authorization_code' {
  return kind === 'authorization_code';
}

/** What a grant without a refresh token asks for with each token request; stored with it. */
export interface TokenRequestParams {
  /** Space-separated, as sent. */
  scope?: string;
  /** RFC 8707 resource indicators. */
  resource?: string[];
  /** The `audience` parameter some servers take instead (Auth0, Okta). */
  audience?: string;
  /** JWT-bearer: the account the assertion speaks for (`sub`: Google domain-wide delegation). */
  subject?: string;
}

export const REFRESH_OUTCOMES = [
  'refreshed',
  'transient_error',
  'needs_reconsent',
  'client_error',
  'overtaken',
  /** The request was sent but no readable answer came back: the provider may have rotated. */
  'in_doubt',
  /** An answer arrived for a grant that had been stopped meanwhile: tokens kept, state left alone. */
  'conflict',
  'broken',
] as const;
export type RefreshOutcome = (typeof REFRESH_OUTCOMES)[number];

/** One consented account, as every layer above the store sees it: times are epoch milliseconds. */
export interface Grant {
  id: string;
  clientRef: string;
  label: string;
  kind: GrantKind;
  /** Null for `authorization_code`: its refresh token carries what was granted. */
  tokenRequest: TokenRequestParams | null;
  /** The provider's account id, when the consent named one. */
  subject: string | null;
  state: GrantState;
  mode: GrantMode;
  /** The last condition an alert was sent for, so each transition alerts once. */
  alertedState: string | null;
  /** Moves on with every change of tokens: jobs and leases name the version they expect. */
  version: number;
  tokenType: string | null;
  scope: string | null;
  accessExpiresAt: number;
  accessLifetimeMs: number;
  /** Last time the provider accepted or issued the refresh token: the keep-alive clock starts here. */
  refreshTokenUsedAt: number;
  /** The refresh token's own end, which no refresh extends (a hard limit); null when none is known. */
  refreshExpiresAt: number | null;
  /** Who set that end: `refresh_token_expires_in`, or the preset's fixed limit in words. */
  refreshExpiresReason: string | null;
  nextRefreshAt: number;
  /** Who holds the refresh lease, and until when on the store's clock (invariant 2). */
  leaseOwner: string | null;
  leaseUntil: number | null;
  /** When a request went out under a lease with no answer settling it since (store clock). */
  leaseSentAt: number | null;
  consecutiveFailures: number;
  lastError: string | null;
  lastErrorAt: number | null;
  lastRefreshedAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/**
 * In doubt: a request went out, its lease is over, and no answer settled it. The provider may
 * have rotated the refresh token, and nobody can know until the grace ends (invariant 2).
 */
export function isInDoubt(grant: Pick<Grant, 'leaseSentAt' | 'leaseUntil'>, now: number): boolean {
  return grant.leaseSentAt !== null && (grant.leaseUntil === null || grant.leaseUntil < now);
}

/** A grant's tokens in clear, opened only when asked for (one unseal each) and never serialised. */
export interface GrantTokens {
  accessToken(): string;
  /** Empty for kinds without a refresh token. */
  refreshToken(): string;
}

/** A grant as loaded for a token read or a refresh: the row and a way to its tokens. */
export interface StoredGrant {
  grant: Grant;
  tokens: GrantTokens;
}

/** One refresh attempt, for `grant show`, the grants page and post-mortems. */
export interface RefreshEvent {
  at: number;
  trigger: string;
  outcome: RefreshOutcome;
  durationMs?: number | null;
  httpStatus?: number | null;
  errorCode?: string | null;
  message?: string | null;
  rotated?: boolean | null;
}

/** An event as stored: the version it was recorded against, and its place in the log. */
export interface RecordedRefreshEvent extends Required<RefreshEvent> {
  id: number;
  grantId: string;
  version: number;
}
