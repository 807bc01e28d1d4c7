/**
 * The store's ports: what the rest of grantkeeper may ask of any store adapter (SQLite, PostgreSQL).
 * Every method is async and names no connection or transaction type; an adapter runs each one as a
 * unit (one statement, or one transaction where the method says "in one transaction"). A failure of
 * the storage under it is a StorageError with its cause (src/grants/storage-error.ts); anything else
 * thrown is a bug. Times are epoch milliseconds; "the store's clock" is the time the store itself
 * reads (SQL), which is what leases are measured on (invariant 2). Tokens and secrets cross these
 * ports in clear and are sealed by the adapter (invariant 1): never stored, logged or returned any
 * other way. `test/contract/` holds the suite every adapter must pass.
 */
import type { PrivateKeyInput, SigningKeyInfo } from '../crypto/signing-key.js';
import type { AuthorizeParams } from '../oauth/authorize-params.js';
import type { ProviderProfile } from '../oauth/providers.js';
import type { ClientAuthMethod, TokenEndpointTarget } from '../oauth/token-client.js';
import type { IssuedTokens, RefreshTokenEnd } from '../policy/refresh-plan.js';
import type {
  Grant,
  GrantKind,
  GrantMode,
  GrantState,
  GrantTokens,
  RecordedRefreshEvent,
  RefreshEvent,
  RefreshOutcome,
  StoredGrant,
  TokenRequestParams,
} from './grant.js';

/** What a refresh or a consent hands the store; the adapter seals the tokens itself. */
export interface TokenUpdate extends IssuedTokens {
  /** Absent when the provider did not rotate: the stored refresh token is kept. */
  refreshToken?: string;
  /**
   * The refresh token's hard end (src/policy/refresh-plan.ts refreshTokenEnd). Absent on a refresh:
   * the stored one is kept; absent on a consent: the new refresh token has none.
   */
  refreshExpires?: RefreshTokenEnd;
}

export interface SaveConsentInput extends TokenUpdate {
  clientRef: string;
  label: string;
  /** Default `authorization_code`. */
  kind?: GrantKind;
  /** For kinds without a refresh token: what each token request asks for. */
  tokenRequest?: TokenRequestParams;
  subject?: string;
  /** Empty for kinds without a refresh token. */
  refreshToken: string;
  now: number;
}

/** What a consent may replace: the grant its label already names. */
export type ConsentTarget = Pick<Grant, 'id' | 'clientRef' | 'subject' | 'kind'>;

export interface SchedulableGrant {
  id: string;
  version: number;
  nextRefreshAt: number;
  /** Its job names the client, so pacing can turn the job away before it reaches the store. */
  clientRef: string;
  /** How urgent it is when overdue (a catch-up refreshes the nearest expiry first); unranked without. */
  accessExpiresAt?: number;
  refreshTokenUsedAt?: number;
}

/** One page of `listSchedulable`: at most `limit` grants, after `after` in its order. */
export interface SchedulePage {
  after?: Pick<SchedulableGrant, 'id' | 'nextRefreshAt'>;
  limit: number;
}

/** A grant with its lease read on the store's clock. */
export interface LeaseView {
  grant: Grant;
  /** Lease time left (negative: expired); null when no lease is held. */
  leaseRemainingMs: number | null;
  /** How long ago an unsettled request was sent; null when none is outstanding. */
  sentAgoMs: number | null;
}

export interface CommitResult {
  grant: Grant;
  /** The tokens just stored, for a reader that asked for them. */
  tokens: GrantTokens;
  /** The grant had been stopped meanwhile: tokens stored, state and evidence left as they were. */
  conflict: boolean;
}

export interface FailureRecord {
  state: GrantState;
  nextRefreshAt?: number;
  message: string;
  /** The answer never came: the in-doubt mark is kept instead of settled. */
  inDoubt?: boolean;
}

/** Aggregates for metrics and status, computed by the store so a scrape does not load every row. */
export interface FleetStats {
  byState: Array<{ state: GrantState; count: number }>;
  /** Earliest access-token expiry among live `eager` grants (keepalive tokens lapse by design). */
  earliestEagerExpiry: number | null;
  /** Per client, the live grant whose refresh token has sat unused longest. */
  oldestUseByClient: Array<{ clientRef: string; usedAt: number }>;
  /** Grants with a request sent and no answer settled, whose lease is over (invariant 2). */
  inDoubt: number;
}

/**
 * Which grants a listing or summary covers. Every field narrows: `grantIds` is a reader key's
 * restriction (null: every grant), applied in the query itself so counts never include a grant the
 * caller may not see.
 */
export interface GrantFilter {
  grantIds: readonly string[] | null;
  /** A case-insensitive substring of the label. */
  labelContains?: string;
  clientRef?: string;
  state?: GrantState;
}

/** The position of a grant in the listing order (label, then id): a page starts after it. */
export interface GrantCursor {
  label: string;
  id: string;
}

/**
 * What the fleet summary is asked for. The timelines are `buckets` buckets of `bucketMs` each:
 * ahead from `aheadFrom` (planned refreshes, keep-alive deadlines), behind from `behindFrom`
 * (refresh events). A time's bucket is floor((t - from) / bucketMs).
 */
export interface FleetSummaryQuery {
  grantIds: readonly string[] | null;
  aheadFrom: number;
  behindFrom: number;
  bucketMs: number;
  buckets: number;
  /** Each client's keep-alive interval: a live grant's deadline is refresh_token_used_at + it. */
  keepAlive: ReadonlyArray<{ clientRef: string; intervalMs: number }>;
  /** Deadlines are also counted up to `aheadFrom + deadlineHorizonMs` (a week), past the timeline. */
  deadlineHorizonMs: number;
}

/** The fleet at a glance, aggregated by the store: no row per grant crosses the port. */
export interface FleetSummary {
  /** Grants per client and state (sum them for either alone). */
  counts: Array<{ clientRef: string; state: GrantState; count: number }>;
  /** Live grants planned before `aheadFrom`: due or overdue now. */
  overdue: number;
  /** Live grants' planned refreshes per bucket ahead; buckets without any are absent. */
  planned: Array<{ bucket: number; count: number }>;
  /** Live grants' keep-alive deadlines per bucket ahead. */
  deadlines: Array<{ bucket: number; count: number }>;
  /** Live grants whose deadline passed before `aheadFrom` (a grant at risk of dying idle). */
  deadlinesPassed: number;
  /** Live grants whose deadline is before `aheadFrom + deadlineHorizonMs` (passed ones included). */
  deadlinesWithinHorizon: number;
  /** Refresh events per client, bucket behind and outcome, with the token endpoint's latency. */
  outcomes: Array<{
    clientRef: string;
    bucket: number;
    outcome: RefreshOutcome;
    count: number;
    /** How many of them measured a duration (a request was made), their total and the longest. */
    timed: number;
    totalDurationMs: number;
    maxDurationMs: number | null;
  }>;
}

/** What the alert logic needs to know about a grant. */
export type AlertView = Pick<
  Grant,
  'id' | 'state' | 'consecutiveFailures' | 'alertedState' | 'leaseSentAt' | 'leaseUntil'
>;

/** What the warnings ahead need to know about a grant (src/policy/grant-horizon.ts). */
export type ExpiryView = Pick<
  Grant,
  | 'id'
  | 'label'
  | 'clientRef'
  | 'state'
  | 'kind'
  | 'refreshTokenUsedAt'
  | 'refreshExpiresAt'
  | 'refreshExpiresReason'
>;

/** Which grants may need a new consent before `before`: each client's idle limit in ms. */
export interface ExpiryQuery {
  before: number;
  idleLimits: ReadonlyArray<{ clientRef: string; limitMs: number }>;
}

/**
 * Grants: the rows, their tokens, the lease that keeps one refresh in flight (invariant 2), and the
 * event log. Every state change is a compare-and-swap on `version` (and on the lease owner where one
 * is held): a caller that lost a race gets `undefined` and changes nothing.
 */
export interface GrantRepository {
  /** The grant and its tokens. Undefined: no grant has that id. */
  get(id: string): Promise<StoredGrant | undefined>;
  /** By id or label, as operators name grants. Undefined: neither matches. */
  find(idOrLabel: string): Promise<StoredGrant | undefined>;
  /** Every grant, ordered by label. */
  list(): Promise<Grant[]>;
  listByClient(clientRef: string): Promise<Grant[]>;
  /**
   * At most `limit` grants matching `filter`, in (label, id) order, starting after `after`: what the
   * API and the grants page list, so a fleet of 50,000 is read a page at a time. An empty array:
   * nothing (more) matches.
   */
  page(filter: GrantFilter, page: { after?: GrantCursor; limit: number }): Promise<Grant[]>;
  /** Counts, timelines and refresh outcomes of the grants `query` covers, aggregated in the store. */
  fleetSummary(query: FleetSummaryQuery): Promise<FleetSummary>;
  /**
   * Live grants due before `dueBefore`, most urgent first (by next refresh, then id): what the
   * reconciler makes sure has a job. Paged by key: the next page starts after the last one seen, so
   * a fleet of millions is never one array, and grants replanned meanwhile are not skipped twice.
   */
  listSchedulable(dueBefore: number, page: SchedulePage): Promise<SchedulableGrant[]>;

  /**
   * Stores a freshly consented grant, in one transaction. Re-consenting an existing label replaces
   * its tokens in place, keeping its id and history, and moves the version on so jobs for the old
   * tokens go stale. `mayReplace` sees the grant the label names inside that transaction and throws
   * to refuse (a consent of another account must never take that grant over).
   */
  saveConsent(input: SaveConsentInput, mayReplace?: (existing: ConsentTarget) => void): Promise<Grant>;

  /**
   * Claims the right to refresh (invariant 2): succeeds only for a live grant still at `version`
   * whose lease is free or expired on the store's clock, and, when a holder marked a request sent
   * and nothing settled it, only once `inDoubtGraceMs` has passed since that send. The claimed
   * grant keeps an unsettled earlier send's mark: it stays in doubt until an answer settles it.
   * Undefined: someone else holds it, it moved on, or it stopped.
   */
  claim(
    id: string,
    version: number,
    owner: string,
    leaseMs: number,
    inDoubtGraceMs: number,
  ): Promise<StoredGrant | undefined>;
  /** The grant with its lease measured on the store's clock. Undefined: it no longer exists. */
  leaseView(id: string): Promise<LeaseView | undefined>;
  /**
   * The fence, run immediately before a token request is written: the lease must still be `owner`'s,
   * at `version`, with more than `minRemainingMs` left on the store's clock; marks the request sent
   * in the same statement. Returns the lease time left. Undefined: do not send; nothing was spent.
   */
  markSent(id: string, version: number, owner: string, minRemainingMs: number): Promise<number | undefined>;
  /**
   * Gives a lease back without an answer. `sentAt` is what the in-doubt mark becomes: the value the
   * claim found (an earlier unsettled send, or null) when our own request never left.
   */
  releaseLease(id: string, owner: string, sentAt: number | null): Promise<void>;
  /** Keeps `owner`'s lease alive `leaseMs` more (store clock). False: it is no longer theirs. */
  extendLease(id: string, version: number, owner: string, leaseMs: number): Promise<boolean>;

  /**
   * Commits a token response and its event in one transaction (invariant 3). Conditional on the
   * version only: a successful response is the newest truth, kept even if the lease ran out, while
   * an overtaken holder can never overwrite newer tokens. A grant stopped meanwhile keeps its state
   * and evidence (never revived) but stores the tokens (they may be the live ones), and the event is
   * `conflict`. Undefined: the version moved on, nothing was written.
   */
  commitRefresh(
    id: string,
    version: number,
    update: TokenUpdate,
    event: RefreshEvent,
  ): Promise<CommitResult | undefined>;
  /**
   * An unusable answer that carried a valid rotated refresh token: stores that token and records the
   * failure, in one transaction, conditional on the version and `owner`'s lease (invariant 3).
   * Undefined: overtaken, nothing written.
   */
  commitRotationOnly(
    id: string,
    version: number,
    owner: string,
    update: { refreshToken: string; refreshTokenUsedAt: number },
    failure: { nextRefreshAt: number; message: string },
    event: RefreshEvent,
  ): Promise<Grant | undefined>;
  /**
   * Records a failed attempt made under `owner`'s lease and releases it, with its event, in one
   * transaction. Undefined: overtaken, nothing written.
   */
  recordFailure(
    id: string,
    version: number,
    owner: string,
    failure: FailureRecord,
    event: RefreshEvent,
  ): Promise<Grant | undefined>;
  /** History only (another holder rotated first): no change to the grant. */
  recordEvent(id: string, version: number, event: RefreshEvent): Promise<void>;

  /**
   * An operator's retry: a stopped grant becomes `failing` again and any grant is due now. The
   * version is kept, so a job planned for it still counts. Undefined: no such grant.
   */
  reviveForRetry(id: string, now: number): Promise<Grant | undefined>;
  /**
   * Switches eager/keepalive with the next refresh replanned by the caller. Leaves `version` alone:
   * only a lease holder may move it. Undefined: no such grant.
   */
  setMode(id: string, mode: GrantMode, nextRefreshAt: number, now: number): Promise<Grant | undefined>;
  /** Deletes a grant and its events; its queued jobs go stale. False: there was none. */
  remove(id: string): Promise<boolean>;
  /** The newest events first. */
  recentEvents(id: string, limit: number): Promise<RecordedRefreshEvent[]>;
  /**
   * The newest `perGrant` events of each of `ids`, in one query (a page of grants, not one query
   * per grant): grouped by grant in `ids` order, newest first within each. Unknown ids add nothing.
   */
  recentEventsOf(ids: readonly string[], perGrant: number): Promise<RecordedRefreshEvent[]>;

  fleetStats(): Promise<FleetStats>;
  /** Grants an alert may be due for: anything not plainly active, in doubt, or alerted and not cleared. */
  listAlertCandidates(): Promise<AlertView[]>;
  alertView(id: string): Promise<AlertView | undefined>;
  /**
   * Live grants with a refresh token whose hard end, or idle deadline (last use + its client's idle
   * limit; a client not named has none), falls before `query.before`, by id: what the warnings
   * ahead and `status` look at, without a row per healthy grant.
   */
  listExpiring(query: ExpiryQuery): Promise<ExpiryView[]>;
  /** Compare-and-swap on `alertedState`, so each transition is alerted once across processes. */
  markAlerted(id: string, from: string | null, to: string | null): Promise<boolean>;
}

/** Which of a client's secrets the token endpoint last accepted. */
export type SecretSlot = 'current' | 'previous';

/** A client secret's lifecycle, never the secrets themselves. */
export interface SecretLifecycle {
  /** When the current secret ends (set where it was created, e.g. Microsoft); null: not known to end. */
  expiresAt: number | null;
  /** The secret the last rotation replaced, kept as a fallback until retired; null: none. */
  previous: { expiresAt: number | null } | null;
  /** Which one last worked, and since when; null: not known since the last rotation. */
  inUse: SecretSlot | null;
  inUseAt: number | null;
}

/** A registered OAuth client as every layer sees it: never its secret. */
export interface Client {
  id: string;
  name: string;
  profile: ProviderProfile;
  clientId: string;
  authMethod: ClientAuthMethod;
  hasSecret: boolean;
  secret: SecretLifecycle;
  /** The public facts of its sealed private key (private_key_jwt, JWT-bearer); null without one. */
  signingKey: SigningKeyInfo | null;
  scopes: string[];
  redirectUri: string | null;
  authorizeParams: AuthorizeParams;
  createdAt: number;
  updatedAt: number;
}

/** A client with its secret and private key opened: only ever held in memory, for a token request. */
export interface OpenedClient {
  id: string;
  name: string;
  profile: ProviderProfile;
  scopes: string[];
  redirectUri?: string;
  authorizeParams: AuthorizeParams;
  target: TokenEndpointTarget;
  /** Which secret last worked: a token response saying otherwise is recorded (recordSecretInUse). */
  secretInUse: SecretSlot | null;
}

export interface ClientInput {
  name: string;
  profile: ProviderProfile;
  clientId: string;
  clientSecret?: string;
  /** When that secret ends; absent: not known to end. */
  secretExpiresAt?: number;
  /** A private key to sign assertions with; the adapter seals it like the secret. */
  privateKey?: PrivateKeyInput;
  authMethod: ClientAuthMethod;
  scopes: string[];
  redirectUri?: string;
  /** Extra authorization-request parameters, over the preset's; already checked. */
  authorizeParams?: AuthorizeParams;
  now: number;
}

/** OAuth clients; secrets sealed at rest like tokens. */
export interface ClientRepository {
  /** The client with its secret opened, for a token request. Undefined: no such client. */
  openById(id: string): Promise<OpenedClient | undefined>;
  get(id: string): Promise<Client | undefined>;
  findByName(name: string): Promise<Client | undefined>;
  /** Ordered by name. */
  list(): Promise<Client[]>;
  /** Adds a client, or updates the one with the same name in place (its grants stay attached). */
  upsert(input: ClientInput): Promise<Client>;
  /**
   * Removes a client, in one transaction with its grants when `withGrants` (without it, a client
   * that still has grants is kept). Returns the labels of the grants removed; undefined when the
   * client did not exist or was kept.
   */
  remove(id: string, opts: { withGrants: boolean }): Promise<{ grantLabels: string[] } | undefined>;
  /**
   * Makes `secret` the current secret and keeps the one it replaces as the fallback, in one
   * transaction. Undefined, with nothing changed: no such client, it has no secret to replace, or
   * a fallback is still kept (retire it first: one fallback at a time).
   */
  rotateSecret(
    id: string,
    next: { secret: string; expiresAt: number | null; now: number },
  ): Promise<Client | undefined>;
  /** Drops the fallback secret. Undefined: no such client, or it kept none. */
  retireSecret(id: string, now: number): Promise<Client | undefined>;
  /** Records which secret the token endpoint accepted, when it changed from what `openById` said. */
  recordSecretInUse(id: string, slot: SecretSlot, at: number): Promise<void>;
}

/** What a key may do: an admin reaches everything; a reader only the tokens and views of its grants. */
export type ApiKeyAccess = { role: 'admin' } | { role: 'reader'; grantIds: string[] };

export interface ApiKey {
  id: string;
  name: string;
  role: 'admin' | 'reader';
  /** The grants a reader may use; null for an admin. */
  grantIds: string[] | null;
  createdAt: number;
  lastUsedAt: number | null;
}

/** Bearer keys for the HTTP API, stored only as SHA-256 hashes. */
export interface ApiKeyRepository {
  /** Creates a key with this hash; throws name_taken for a taken name. */
  create(input: { name: string; keyHash: string; now: number } & ApiKeyAccess): Promise<ApiKey>;
  findByName(name: string): Promise<ApiKey | undefined>;
  findById(id: string): Promise<ApiKey | undefined>;
  /** The key whose hash (hex) this is, with the hash for a constant-time compare. */
  findByHash(keyHash: string): Promise<(ApiKey & { keyHash: string }) | undefined>;
  /** Ordered by name, without hashes: what operators list. */
  list(): Promise<ApiKey[]>;
  /** Ordered by name: what an API process keeps in memory to authenticate. */
  listWithHashes(): Promise<Array<ApiKey & { keyHash: string }>>;
  /** Deletes the key and its browser sessions. False: there was none. */
  remove(name: string): Promise<boolean>;
  /** One write for every key used since the last flush. */
  touch(ids: readonly string[], at: number): Promise<void>;
}

export interface ApiSession {
  idHash: string;
  apiKeyId: string;
  createdAt: number;
  expiresAt: number;
}

/** Browser sessions, stored only as hashes of their ids, each bound to the key that opened it. */
export interface SessionRepository {
  create(session: ApiSession): Promise<void>;
  /** The session with this hash that has not expired at `now`. */
  findLive(idHash: string, now: number): Promise<ApiSession | undefined>;
  /** False: there was none. */
  remove(idHash: string): Promise<boolean>;
  /** Deletes every session expired at `now`; returns how many. */
  purgeExpired(now: number): Promise<number>;
}

/** A one-time consent link, as stored: never its token, only the token's hash. */
export interface ConsentLink {
  id: string;
  clientRef: string;
  /** The grant it stores or re-consents: the only one it can ever write. */
  label: string;
  createdAt: number;
  expiresAt: number;
  /** When a consent through it stored the grant; null while unused. */
  usedAt: number | null;
}

/** An authorization request a link started, waiting for the provider's redirect back. */
export interface PendingAuthorization {
  /** SHA-256 (hex) of the `state` sent: the redirect is matched by it. */
  stateHash: string;
  linkId: string;
  codeVerifier: string;
  nonce: string | null;
  redirectUri: string;
  createdAt: number;
  expiresAt: number;
}

/** Consent links and their pending authorizations (src/consent/consent-links.ts). */
export interface ConsentLinkRepository {
  create(link: ConsentLink & { tokenHash: string }): Promise<void>;
  /** The link whose token hashes to `tokenHash`, used or expired too (so the page can say which). */
  findByTokenHash(tokenHash: string): Promise<ConsentLink | undefined>;
  get(id: string): Promise<ConsentLink | undefined>;
  /** Records an authorization request sent for a link; several may wait at once (two tabs). */
  addAuthorization(pending: PendingAuthorization): Promise<void>;
  /**
   * Removes and returns the pending authorization with this state hash, in one statement, so a
   * redirect is answered at most once. Undefined: none, or it expired at `now` (and is gone).
   */
  takeAuthorization(stateHash: string, now: number): Promise<PendingAuthorization | undefined>;
  /**
   * Marks the link used at `now`: a compare-and-swap that succeeds only while it is unused and not
   * expired at `now`, so two consents racing through one link store at most one grant.
   */
  markUsed(id: string, now: number): Promise<boolean>;
  /** Undoes `markUsed` when the grant could not be stored after all. */
  markUnused(id: string): Promise<void>;
  /**
   * Deletes links (with their authorizations) and authorizations that expired before `before`;
   * returns how many rows went, authorizations removed with their link not counted.
   */
  purgeExpired(before: number): Promise<number>;
}

/** Small facts about the service itself (which queue transitions were alerted). */
export interface ServiceStateRepository {
  get(key: string): Promise<string | null>;
  /** Moves `key` from `from` to `to` (null: absent), atomically. False: it was not at `from`. */
  compareAndSet(key: string, from: string | null, to: string | null): Promise<boolean>;
}

/** What `grantkeeper rekey` did; counts only, never a value. */
export interface RekeyReport {
  /** The primary key every value is now sealed under. */
  keyId: string;
  resealed: {
    accessTokens: number;
    refreshTokens: number;
    clientSecrets: number;
    clientKeys: number;
    keyCheck: number;
  };
  alreadyCurrent: number;
  /** Key ids the store held before, with how many values each sealed. */
  before: Record<string, number>;
  total: number;
}

/** The store as a whole: health, the sealing-key check, key rotation, shutdown. */
export interface StoreAdmin {
  readonly kind: 'sqlite' | 'postgres';
  /** Where it is, for status and logs: a file path, or a URL without its password. */
  readonly location: string;
  /** A round trip: throws a StorageError when the store does not answer. */
  ping(): Promise<void>;
  /** An integrity check suited to the adapter; `detail` is its own words. */
  check(): Promise<{ ok: boolean; detail: string }>;
  /**
   * Proves the loaded key opens this store (a value sealed at creation), so a wrong key fails at
   * start in one line naming the key ids instead of at every grant's first refresh.
   */
  verifySealingKey(): Promise<void>;
  /**
   * Reseals every secret under the primary key, in one transaction that no refresh can commit into:
   * a value no loaded key opens aborts it with nothing changed.
   */
  rekey(): Promise<RekeyReport>;
  close(): Promise<void>;
}

/**
 * Where planned refreshes go: BullMQ's delayed jobs in the service. Without Redis (a one-shot
 * command while the service is down) it is NO_SCHEDULER: the store already holds the plan, and the
 * service's reconciler queues it when it runs.
 */
export interface RefreshScheduler {
  /** Queues each grant's next refresh; resolves with how many were queued (those near enough). */
  schedule(grants: readonly SchedulableGrant[]): Promise<number>;
  /** Drops the job of a plan that will not run any more (a grant replanned in place). */
  cancel(plan: SchedulableGrant): Promise<void>;
}

export const NO_SCHEDULER: RefreshScheduler = {
  schedule: async () => 0,
  cancel: async () => {},
};

/** Everything a process needs from its store, built by one adapter. */
export interface Store {
  grants: GrantRepository;
  clients: ClientRepository;
  apiKeys: ApiKeyRepository;
  sessions: SessionRepository;
  consentLinks: ConsentLinkRepository;
  serviceState: ServiceStateRepository;
  admin: StoreAdmin;
}
