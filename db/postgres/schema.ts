import { bigint, boolean, index, integer, jsonb, pgTable, text } from 'drizzle-orm/pg-core';
import { DEFAULTS } from '../columns.js';

// The same tables as db/sqlite/schema.ts, in PostgreSQL's types: epoch milliseconds are bigint
// (read back as numbers: they stay far below 2^53), JSON is jsonb, flags are boolean. Column values
// are the domain's words (src/grants/grant.ts), parsed by the adapter on the way out.
// Declared twice on purpose: drizzle-kit writes each dialect's migrations from its own builders
// (pg-core here, sqlite-core there), whose column types differ, so one declaration cannot serve
// both; what they must agree on is in db/columns.ts.

const ms = (name: string) => bigint(name, { mode: 'number' });

/** Registered OAuth clients. `profile` is the provider profile resolved when the client was added. */
export const clients = pgTable('clients', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  provider: text('provider').notNull(),
  profile: jsonb('profile').notNull(),
  clientId: text('client_id').notNull(),
  clientSecretSealed: text('client_secret_sealed'),
  secretExpiresAt: ms('secret_expires_at'),
  previousSecretSealed: text('previous_secret_sealed'),
  previousSecretExpiresAt: ms('previous_secret_expires_at'),
  secretInUse: text('secret_in_use'),
  secretInUseAt: ms('secret_in_use_at'),
  privateKeySealed: text('private_key_sealed'),
  signingKey: jsonb('signing_key').$type<Record<string, string> | null>(),
  authMethod: text('auth_method').notNull(),
  scopes: text('scopes').notNull(),
  redirectUri: text('redirect_uri'),
  authorizeParams: jsonb('authorize_params').$type<Record<string, string> | null>(),
  createdAt: ms('created_at').notNull(),
  updatedAt: ms('updated_at').notNull(),
});

/** One row per consented account; `version` is what jobs and leases name (invariant 2). */
export const grants = pgTable(
  'grants',
  {
    id: text('id').primaryKey(),
    clientRef: text('client_ref')
      .notNull()
      .references(() => clients.id),
    label: text('label').notNull().unique(),
    kind: text('kind').notNull().default(DEFAULTS.grantKind),
    tokenRequest: jsonb('token_request').$type<object | null>(),
    subject: text('subject'),
    state: text('state').notNull(),
    mode: text('mode').notNull().default(DEFAULTS.grantMode),
    alertedState: text('alerted_state'),
    version: integer('version').notNull(),
    accessTokenSealed: text('access_token_sealed').notNull(),
    refreshTokenSealed: text('refresh_token_sealed').notNull(),
    tokenType: text('token_type'),
    scope: text('scope'),
    accessExpiresAt: ms('access_expires_at').notNull(),
    accessLifetimeMs: ms('access_lifetime_ms').notNull(),
    refreshTokenUsedAt: ms('refresh_token_used_at').notNull(),
    refreshExpiresAt: ms('refresh_expires_at'),
    refreshExpiresReason: text('refresh_expires_reason'),
    nextRefreshAt: ms('next_refresh_at').notNull(),
    leaseOwner: text('lease_owner'),
    /** On the server's clock (invariant 2): replicas' own clocks never decide who holds a lease. */
    leaseUntil: ms('lease_until'),
    leaseSentAt: ms('lease_sent_at'),
    consecutiveFailures: integer('consecutive_failures').notNull(),
    lastError: text('last_error'),
    lastErrorAt: ms('last_error_at'),
    lastRefreshedAt: ms('last_refreshed_at'),
    createdAt: ms('created_at').notNull(),
    updatedAt: ms('updated_at').notNull(),
  },
  (t) => [
    // Due grants in the reconciler's order, read a page at a time from the index (no sort per page).
    index('grants_due').on(t.nextRefreshAt, t.id),
    index('grants_client_ref').on(t.clientRef),
  ],
);

/** Every refresh attempt, for `grant show`, the grants page and post-mortems. */
export const refreshEvents = pgTable(
  'refresh_events',
  {
    // By default, not always: a store copied from SQLite keeps its event ids.
    id: bigint('id', { mode: 'number' }).primaryKey().generatedByDefaultAsIdentity(),
    grantId: text('grant_id')
      .notNull()
      .references(() => grants.id, { onDelete: 'cascade' }),
    at: ms('at').notNull(),
    trigger: text('trigger').notNull(),
    outcome: text('outcome').notNull(),
    version: integer('version').notNull(),
    durationMs: integer('duration_ms'),
    httpStatus: integer('http_status'),
    errorCode: text('error_code'),
    message: text('message'),
    rotated: boolean('rotated'),
  },
  (t) => [index('refresh_events_grant_at').on(t.grantId, t.at)],
);

/** Bearer keys for the HTTP API, stored as SHA-256 hashes; `grantIds` null means every grant. */
export const apiKeys = pgTable('api_keys', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  keyHash: text('key_hash').notNull().unique(),
  role: text('role').notNull().default(DEFAULTS.apiKeyRole),
  grantIds: jsonb('grant_ids').$type<string[] | null>(),
  createdAt: ms('created_at').notNull(),
  lastUsedAt: ms('last_used_at'),
});

/** Browser sessions: the cookie's random id, stored only as its SHA-256 hash. */
export const apiSessions = pgTable(
  'api_sessions',
  {
    idHash: text('id_hash').primaryKey(),
    apiKeyId: text('api_key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    createdAt: ms('created_at').notNull(),
    expiresAt: ms('expires_at').notNull(),
  },
  (t) => [index('api_sessions_expires_at').on(t.expiresAt)],
);

/** One-time consent links: only the SHA-256 hash of the URL's token; bound to a client and a label. */
export const consentLinks = pgTable(
  'consent_links',
  {
    id: text('id').primaryKey(),
    tokenHash: text('token_hash').notNull().unique(),
    clientRef: text('client_ref')
      .notNull()
      .references(() => clients.id, { onDelete: 'cascade' }),
    label: text('label').notNull(),
    createdAt: ms('created_at').notNull(),
    expiresAt: ms('expires_at').notNull(),
    usedAt: ms('used_at'),
  },
  (t) => [index('consent_links_expires_at').on(t.expiresAt)],
);

/** Authorization requests a consent link started, kept server side (the URL carries only `state`). */
export const consentLinkAuthorizations = pgTable(
  'consent_link_authorizations',
  {
    stateHash: text('state_hash').primaryKey(),
    linkId: text('link_id')
      .notNull()
      .references(() => consentLinks.id, { onDelete: 'cascade' }),
    codeVerifier: text('code_verifier').notNull(),
    nonce: text('nonce'),
    redirectUri: text('redirect_uri').notNull(),
    createdAt: ms('created_at').notNull(),
    expiresAt: ms('expires_at').notNull(),
  },
  (t) => [index('consent_link_authorizations_expires_at').on(t.expiresAt)],
);

/** Small key/value facts about the store itself (e.g. the sealing-key check value). */
export const meta = pgTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

export type ClientRow = typeof clients.$inferSelect;
export type GrantRow = typeof grants.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type ConsentLinkRow = typeof consentLinks.$inferSelect;
export type RefreshEventRow = typeof refreshEvents.$inferSelect;
