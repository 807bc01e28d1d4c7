import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { DEFAULTS } from '../columns.js';

// Column values are the domain's words (src/grants/grant.ts); the adapter parses them on the way
// out, so this file names no domain type: db/ imports nothing from src/.
// These tables are declared again in db/postgres/schema.ts on purpose: drizzle-kit writes each
// dialect's migrations from its own builders (sqlite-core here, pg-core there), whose column types
// differ, so one declaration cannot serve both; what they must agree on is in db/columns.ts.

/** Registered OAuth clients. `profile` is the provider profile resolved when the client was added. */
export const clients = sqliteTable('clients', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  provider: text('provider').notNull(),
  profile: text('profile', { mode: 'json' }).notNull(),
  clientId: text('client_id').notNull(),
  clientSecretSealed: text('client_secret_sealed'),
  /** When the current secret stops working (Microsoft sets it at creation); null: not known to end. */
  secretExpiresAt: integer('secret_expires_at'),
  /** The secret a rotation replaced, kept as a fallback until retired, sealed like the current one. */
  previousSecretSealed: text('previous_secret_sealed'),
  previousSecretExpiresAt: integer('previous_secret_expires_at'),
  /** Which secret the token endpoint last accepted (`current` or `previous`), and when it changed. */
  secretInUse: text('secret_in_use'),
  secretInUseAt: integer('secret_in_use_at'),
  /** The private key of a client that signs assertions (private_key_jwt, JWT-bearer), sealed like the secret. */
  privateKeySealed: text('private_key_sealed'),
  /** That key's public facts (algorithm, key id, certificate thumbprint, audience); null without a key. */
  signingKey: text('signing_key', { mode: 'json' }).$type<Record<string, string> | null>(),
  authMethod: text('auth_method').notNull(),
  scopes: text('scopes').notNull(),
  redirectUri: text('redirect_uri'),
  /** Extra authorization-request parameters of this client (e.g. `domain_hint`), over the preset's. */
  authorizeParams: text('authorize_params', { mode: 'json' }).$type<Record<string, string> | null>(),
  createdAt: integer('created_at').notNull(),
  updatedAt: integer('updated_at').notNull(),
});

/**
 * One row per consented account. `version` moves on every committed refresh: jobs and leases
 * name the version they expect, which is what keeps one refresh in flight per grant.
 */
export const grants = sqliteTable(
  'grants',
  {
    id: text('id').primaryKey(),
    clientRef: text('client_ref')
      .notNull()
      .references(() => clients.id),
    label: text('label').notNull().unique(),
    /** Where the next token comes from: authorization_code (a refresh token), client_credentials, jwt_bearer. */
    kind: text('kind').notNull().default(DEFAULTS.grantKind),
    /** What a grant without a refresh token asks for each time (scope, resource, audience, subject). */
    tokenRequest: text('token_request', { mode: 'json' }).$type<object | null>(),
    subject: text('subject'),
    state: text('state').notNull(),
    mode: text('mode').notNull().default(DEFAULTS.grantMode),
    /** The last state an alert was sent for, so each transition alerts once. */
    alertedState: text('alerted_state'),
    version: integer('version').notNull(),
    accessTokenSealed: text('access_token_sealed').notNull(),
    /** Sealed empty for kinds without a refresh token. */
    refreshTokenSealed: text('refresh_token_sealed').notNull(),
    tokenType: text('token_type'),
    scope: text('scope'),
    accessExpiresAt: integer('access_expires_at').notNull(),
    accessLifetimeMs: integer('access_lifetime_ms').notNull(),
    /** Last time the provider accepted or issued the refresh token: the keep-alive clock starts here. */
    refreshTokenUsedAt: integer('refresh_token_used_at').notNull(),
    /** The refresh token's own end, which no refresh extends; null when none is known. */
    refreshExpiresAt: integer('refresh_expires_at'),
    /** Who said so: `refresh_token_expires_in` (the provider's answer) or a preset's fixed limit. */
    refreshExpiresReason: text('refresh_expires_reason'),
    nextRefreshAt: integer('next_refresh_at').notNull(),
    leaseOwner: text('lease_owner'),
    /** On the store's clock (invariant 2): a lease is compared only with the time the store reads. */
    leaseUntil: integer('lease_until'),
    /**
     * Set (store clock) by the holder immediately before its token request is written. A lease that
     * ran out with this set and nothing committed is "in doubt": the provider may have rotated.
     */
    leaseSentAt: integer('lease_sent_at'),
    consecutiveFailures: integer('consecutive_failures').notNull(),
    lastError: text('last_error'),
    lastErrorAt: integer('last_error_at'),
    lastRefreshedAt: integer('last_refreshed_at'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  // Due grants in the reconciler's order (next refresh, then id), read a page at a time from the
  // index itself: no sort of every due grant for each page.
  (t) => [index('grants_due').on(t.nextRefreshAt, t.id)],
);

/** Every refresh attempt, for `grant show`, the dashboard timeline and post-mortems. */
export const refreshEvents = sqliteTable(
  'refresh_events',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    grantId: text('grant_id')
      .notNull()
      .references(() => grants.id, { onDelete: 'cascade' }),
    at: integer('at').notNull(),
    trigger: text('trigger').notNull(),
    outcome: text('outcome').notNull(),
    version: integer('version').notNull(),
    durationMs: integer('duration_ms'),
    httpStatus: integer('http_status'),
    errorCode: text('error_code'),
    message: text('message'),
    rotated: integer('rotated', { mode: 'boolean' }),
  },
  (t) => [index('refresh_events_grant_at').on(t.grantId, t.at)],
);

/** Bearer keys for the HTTP API, stored as SHA-256 hashes; `grantIds` null means every grant. */
export const apiKeys = sqliteTable('api_keys', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  keyHash: text('key_hash').notNull().unique(),
  /** `admin`: every grant, writes, the queue dashboard; `reader`: the tokens and views of `grantIds`. */
  role: text('role').notNull().default(DEFAULTS.apiKeyRole),
  grantIds: text('grant_ids', { mode: 'json' }).$type<string[] | null>(),
  createdAt: integer('created_at').notNull(),
  lastUsedAt: integer('last_used_at'),
});

/**
 * Browser sessions of the grants page and queue dashboard: the cookie carries a random id, stored
 * here only as its SHA-256 hash, never the API key it was opened with.
 */
export const apiSessions = sqliteTable(
  'api_sessions',
  {
    idHash: text('id_hash').primaryKey(),
    apiKeyId: text('api_key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [index('api_sessions_expires_at').on(t.expiresAt)],
);

/**
 * One-time consent links: the URL carries a random token, stored here only as its SHA-256 hash.
 * Bound to a client and a label; `usedAt` is set once, by the consent that stored the grant.
 */
export const consentLinks = sqliteTable(
  'consent_links',
  {
    id: text('id').primaryKey(),
    tokenHash: text('token_hash').notNull().unique(),
    clientRef: text('client_ref')
      .notNull()
      .references(() => clients.id, { onDelete: 'cascade' }),
    label: text('label').notNull(),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
    usedAt: integer('used_at'),
  },
  (t) => [index('consent_links_expires_at').on(t.expiresAt)],
);

/**
 * Authorization requests a consent link started and the provider has not answered yet: kept here,
 * server side, so the browser's URL carries only `state` (stored as its SHA-256 hash).
 */
export const consentLinkAuthorizations = sqliteTable(
  'consent_link_authorizations',
  {
    stateHash: text('state_hash').primaryKey(),
    linkId: text('link_id')
      .notNull()
      .references(() => consentLinks.id, { onDelete: 'cascade' }),
    codeVerifier: text('code_verifier').notNull(),
    nonce: text('nonce'),
    redirectUri: text('redirect_uri').notNull(),
    createdAt: integer('created_at').notNull(),
    expiresAt: integer('expires_at').notNull(),
  },
  (t) => [index('consent_link_authorizations_expires_at').on(t.expiresAt)],
);

/** Small key/value facts about the store itself (e.g. the sealing-key check value). */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

export type ClientRow = typeof clients.$inferSelect;
export type GrantRow = typeof grants.$inferSelect;
export type NewGrantRow = typeof grants.$inferInsert;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type ApiSessionRow = typeof apiSessions.$inferSelect;
export type ConsentLinkRow = typeof consentLinks.$inferSelect;
export type RefreshEventRow = typeof refreshEvents.$inferSelect;
export type NewRefreshEventRow = typeof refreshEvents.$inferInsert;
