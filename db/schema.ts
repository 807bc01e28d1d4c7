import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';

/** States a grant moves through; only the first two are refreshed by the worker. */
export const GRANT_STATES = ['active', 'failing', 'needs_reconsent', 'client_error'] as const;
export type GrantState = (typeof GRANT_STATES)[number];
export const LIVE_GRANT_STATES: readonly GrantState[] = ['active', 'failing'];

/**
 * `eager` grants are refreshed ahead of every access-token expiry; `keepalive` grants only as often
 * as the provider's idle limit needs, and readers refresh them on demand.
 */
export const GRANT_MODES = ['eager', 'keepalive'] as const;
export type GrantMode = (typeof GRANT_MODES)[number];

export const REFRESH_OUTCOMES = [
  'refreshed',
  'transient_error',
  'needs_reconsent',
  'client_error',
  'overtaken',
] as const;
export type RefreshOutcomeName = (typeof REFRESH_OUTCOMES)[number];

/** Registered OAuth clients. `profile` is the provider profile resolved when the client was added. */
export const clients = sqliteTable('clients', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique(),
  provider: text('provider').notNull(),
  profile: text('profile', { mode: 'json' }).notNull(),
  clientId: text('client_id').notNull(),
  clientSecretSealed: text('client_secret_sealed'),
  authMethod: text('auth_method').notNull(),
  scopes: text('scopes').notNull(),
  redirectUri: text('redirect_uri'),
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
    subject: text('subject'),
    state: text('state', { enum: GRANT_STATES }).notNull(),
    mode: text('mode', { enum: GRANT_MODES }).notNull().default('eager'),
    /** The last state an alert was sent for, so each transition alerts once. */
    alertedState: text('alerted_state'),
    version: integer('version').notNull(),
    accessTokenSealed: text('access_token_sealed').notNull(),
    refreshTokenSealed: text('refresh_token_sealed').notNull(),
    tokenType: text('token_type'),
    scope: text('scope'),
    accessExpiresAt: integer('access_expires_at').notNull(),
    accessLifetimeMs: integer('access_lifetime_ms').notNull(),
    /** Last time the provider accepted or issued the refresh token: the keep-alive clock starts here. */
    refreshTokenUsedAt: integer('refresh_token_used_at').notNull(),
    nextRefreshAt: integer('next_refresh_at').notNull(),
    leaseOwner: text('lease_owner'),
    leaseUntil: integer('lease_until'),
    consecutiveFailures: integer('consecutive_failures').notNull(),
    lastError: text('last_error'),
    lastErrorAt: integer('last_error_at'),
    lastRefreshedAt: integer('last_refreshed_at'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [index('grants_state_next_refresh').on(t.state, t.nextRefreshAt)],
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
    outcome: text('outcome', { enum: REFRESH_OUTCOMES }).notNull(),
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
  grantIds: text('grant_ids', { mode: 'json' }).$type<string[] | null>(),
  createdAt: integer('created_at').notNull(),
  lastUsedAt: integer('last_used_at'),
});

/** Small key/value facts about the store itself (e.g. the sealing-key check value). */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

export type ClientRow = typeof clients.$inferSelect;
export type GrantRow = typeof grants.$inferSelect;
export type NewGrantRow = typeof grants.$inferInsert;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type RefreshEventRow = typeof refreshEvents.$inferSelect;
export type NewRefreshEventRow = typeof refreshEvents.$inferInsert;
