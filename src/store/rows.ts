/**
 * Rows as the domain sees them, shared by every store adapter: each table's columns hold the
 * domain's words (src/grants/grant.ts), parsed here on the way out like any input, so a damaged
 * row is an error, never a state no layer knows. Sealed values are opened here, lazily.
 */
import { z } from 'zod';
import type { Sealer } from '../crypto/sealer.js';
import { type PrivateKeyInput, type SigningKeyInfo, signingKeyInfoSchema } from '../crypto/signing-key.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import {
  GRANT_KINDS,
  GRANT_MODES,
  GRANT_STATES,
  type Grant,
  type GrantKind,
  type GrantMode,
  type GrantState,
  REFRESH_OUTCOMES,
  type RecordedRefreshEvent,
  type RefreshOutcome,
  type StoredGrant,
  type TokenRequestParams,
} from '../grants/grant.js';
import type {
  AlertView,
  ApiKey,
  ApiKeyAccess,
  Client,
  ClientInput,
  ExpiryView,
  OpenedClient,
  PendingAuthorization,
} from '../grants/ports.js';
import { type AuthorizeParams, authorizeParamsSchema } from '../oauth/authorize-params.js';
import type { ClientSigningKey } from '../oauth/client-assertion.js';
import { parseStoredProfile } from '../oauth/providers.js';
import { CLIENT_AUTH_METHODS, type ClientAuthMethod } from '../oauth/token-client.js';
import { newId } from './ids.js';
import {
  codeVerifierContext,
  previousSecretContext,
  privateKeyContext,
  sealContext,
  secretContext,
} from './seal-contexts.js';

/** A grants row in either adapter's types: the domain's fields as stored, plus the sealed tokens. */
export type GrantRowShape = Omit<Grant, 'state' | 'mode' | 'kind' | 'tokenRequest'> & {
  state: string;
  mode: string;
  kind: string;
  tokenRequest: unknown;
  accessTokenSealed: string;
  refreshTokenSealed: string;
};

export interface ClientRowShape {
  id: string;
  name: string;
  profile: unknown;
  clientId: string;
  clientSecretSealed: string | null;
  secretExpiresAt: number | null;
  previousSecretSealed: string | null;
  previousSecretExpiresAt: number | null;
  secretInUse: string | null;
  secretInUseAt: number | null;
  privateKeySealed: string | null;
  signingKey: unknown;
  authMethod: string;
  scopes: string;
  redirectUri: string | null;
  authorizeParams: unknown;
  createdAt: number;
  updatedAt: number;
}

export interface ApiKeyRowShape {
  id: string;
  name: string;
  role: string;
  grantIds: string[] | null;
  createdAt: number;
  lastUsedAt: number | null;
}

export type EventRowShape = Omit<RecordedRefreshEvent, 'outcome'> & { outcome: string };

export function asGrantState(state: string): GrantState {
  if ((GRANT_STATES as readonly string[]).includes(state)) return state as GrantState;
  throw new Error(`a grant row holds an unknown state "${state.slice(0, 40)}"`);
}

function asGrantMode(mode: string): GrantMode {
  if ((GRANT_MODES as readonly string[]).includes(mode)) return mode as GrantMode;
  throw new Error(`a grant row holds an unknown mode "${mode.slice(0, 40)}"`);
}

export function asOutcome(outcome: string): RefreshOutcome {
  if ((REFRESH_OUTCOMES as readonly string[]).includes(outcome)) return outcome as RefreshOutcome;
  throw new Error(`an event row holds an unknown outcome "${outcome.slice(0, 40)}"`);
}

export function toGrant(row: GrantRowShape): Grant {
  const { accessTokenSealed: _a, refreshTokenSealed: _r, ...rest } = row;
  return {
    ...rest,
    state: asGrantState(row.state),
    mode: asGrantMode(row.mode),
    kind: asGrantKind(row.kind),
    tokenRequest: storedTokenRequest(row.tokenRequest),
  };
}

export function asGrantKind(kind: string): GrantKind {
  if ((GRANT_KINDS as readonly string[]).includes(kind)) return kind as GrantKind;
  throw new Error(`a grant row holds an unknown kind "${kind.slice(0, 40)}"`);
}

const tokenRequestSchema = z.strictObject({
  scope: z.string().optional(),
  resource: z.array(z.string()).optional(),
  audience: z.string().optional(),
  subject: z.string().optional(),
});

/** JSON written by us, parsed like any input: it goes into token requests. */
function storedTokenRequest(value: unknown): TokenRequestParams | null {
  if (value === null || value === undefined) return null;
  const parsed = tokenRequestSchema.safeParse(value);
  if (!parsed.success) throw new Error('a grant row holds a damaged token request');
  return parsed.data as TokenRequestParams;
}

/** The row with its tokens opened lazily: one unseal per token asked for. */
export function toStoredGrant(row: GrantRowShape | undefined, sealer: Sealer): StoredGrant | undefined {
  if (!row) return undefined;
  return {
    grant: toGrant(row),
    tokens: {
      accessToken: () => sealer.open(row.accessTokenSealed, sealContext(row.id, 'access_token')),
      refreshToken: () => sealer.open(row.refreshTokenSealed, sealContext(row.id, 'refresh_token')),
    },
  };
}

export function toAlertView(row: { state: string } & Omit<AlertView, 'state'>): AlertView {
  return { ...row, state: asGrantState(row.state) };
}

export function toExpiryView(
  row: Omit<ExpiryView, 'state' | 'kind'> & { state: string; kind: string },
): ExpiryView {
  return { ...row, state: asGrantState(row.state), kind: asGrantKind(row.kind) };
}

export function toEvent(row: EventRowShape): RecordedRefreshEvent {
  return { ...row, outcome: asOutcome(row.outcome) };
}

/** The client as every layer sees it: JSON and text columns parsed like any input, never the secret. */
export function toClient(row: ClientRowShape): Client {
  if (!(CLIENT_AUTH_METHODS as readonly string[]).includes(row.authMethod)) {
    throw new GrantkeeperError('damaged_record', `client ${row.name} has an unknown authentication method`);
  }
  return {
    id: row.id,
    name: row.name,
    profile: parseStoredProfile(row.profile),
    clientId: row.clientId,
    authMethod: row.authMethod as ClientAuthMethod,
    hasSecret: row.clientSecretSealed !== null,
    secret: {
      expiresAt: row.secretExpiresAt,
      previous: row.previousSecretSealed === null ? null : { expiresAt: row.previousSecretExpiresAt },
      inUse: row.secretInUse === 'current' || row.secretInUse === 'previous' ? row.secretInUse : null,
      inUseAt: row.secretInUseAt,
    },
    signingKey: storedSigningKey(row),
    scopes: row.scopes.split(' ').filter(Boolean),
    redirectUri: row.redirectUri,
    authorizeParams: storedAuthorizeParams(row.name, row.authorizeParams),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/** The client with its secret opened, for a token request only. */
export function toOpenedClient(row: ClientRowShape, sealer: Sealer): OpenedClient {
  const client = toClient(row);
  return {
    id: client.id,
    name: client.name,
    profile: client.profile,
    scopes: client.scopes,
    ...(client.redirectUri ? { redirectUri: client.redirectUri } : {}),
    authorizeParams: client.authorizeParams,
    secretInUse: client.secret.inUse,
    target: {
      tokenEndpoint: client.profile.tokenEndpoint,
      clientId: client.clientId,
      authMethod: client.authMethod,
      ...(row.clientSecretSealed
        ? { clientSecret: sealer.open(row.clientSecretSealed, secretContext(row.id)) }
        : {}),
      ...(row.previousSecretSealed
        ? { fallbackClientSecret: sealer.open(row.previousSecretSealed, previousSecretContext(row.id)) }
        : {}),
      ...(row.privateKeySealed && client.signingKey
        ? { signingKey: openedSigningKey(row.privateKeySealed, client, sealer) }
        : {}),
    },
  };
}

function openedSigningKey(sealed: string, client: Client, sealer: Sealer): ClientSigningKey {
  const { alg, keyId, x5tS256, audience } = client.signingKey as SigningKeyInfo;
  // A client registered for the issuer audience was checked to have one (client add).
  const issuer = audience === 'issuer' ? client.profile.issuer : undefined;
  return {
    privateKeyPem: sealer.open(sealed, privateKeyContext(client.id)),
    alg,
    ...(keyId ? { keyId } : {}),
    ...(x5tS256 ? { x5tS256 } : {}),
    ...(issuer ? { audience: issuer } : {}),
  };
}

/** JSON written by us, parsed like any input: a damaged one must not sign with the wrong algorithm. */
function storedSigningKey(row: ClientRowShape): SigningKeyInfo | null {
  if (row.signingKey === null || row.signingKey === undefined) return null;
  const parsed = signingKeyInfoSchema.safeParse(row.signingKey);
  if (!parsed.success)
    throw new GrantkeeperError('damaged_record', `client ${row.name} has a damaged signing key description`);
  return parsed.data;
}

/** The columns a client add or update writes, its secret sealed to the client's id. */
export function clientValues(input: ClientInput, id: string, sealer: Sealer) {
  return {
    provider: input.profile.kind,
    profile: input.profile,
    clientId: input.clientId,
    clientSecretSealed:
      input.clientSecret === undefined ? null : sealer.seal(input.clientSecret, secretContext(id)),
    secretExpiresAt: input.secretExpiresAt ?? null,
    privateKeySealed:
      input.privateKey === undefined ? null : sealer.seal(input.privateKey.pem, privateKeyContext(id)),
    signingKey: input.privateKey === undefined ? null : signingKeyInfo(input.privateKey),
    authMethod: input.authMethod,
    scopes: input.scopes.join(' '),
    redirectUri: input.redirectUri ?? null,
    authorizeParams:
      input.authorizeParams && Object.keys(input.authorizeParams).length > 0 ? input.authorizeParams : null,
    updatedAt: input.now,
  };
}

/**
 * The columns a rotation writes: the current secret becomes the fallback (resealed to its own
 * field) and `next` the current one. Undefined when the row cannot rotate (see ClientRepository).
 */
export function rotatedSecretValues(
  row: ClientRowShape,
  next: { secret: string; expiresAt: number | null; now: number },
  sealer: Sealer,
) {
  if (row.clientSecretSealed === null || row.previousSecretSealed !== null) return undefined;
  const current = sealer.open(row.clientSecretSealed, secretContext(row.id));
  return {
    clientSecretSealed: sealer.seal(next.secret, secretContext(row.id)),
    secretExpiresAt: next.expiresAt,
    previousSecretSealed: sealer.seal(current, previousSecretContext(row.id)),
    previousSecretExpiresAt: row.secretExpiresAt,
    secretInUse: null,
    secretInUseAt: null,
    updatedAt: next.now,
  };
}

/** The columns retiring the fallback writes. */
export function retiredSecretValues(now: number) {
  return {
    previousSecretSealed: null,
    previousSecretExpiresAt: null,
    secretInUse: null,
    secretInUseAt: null,
    updatedAt: now,
  };
}

function signingKeyInfo({ alg, keyId, x5tS256, audience }: PrivateKeyInput): Record<string, string> {
  return { alg, audience, ...(keyId ? { keyId } : {}), ...(x5tS256 ? { x5tS256 } : {}) };
}

/** The column is JSON written by us, but parsed like any input: a damaged one must not reach a URL. */
function storedAuthorizeParams(name: string, value: unknown): AuthorizeParams {
  if (value === null || value === undefined) return {};
  const parsed = authorizeParamsSchema.safeParse(value);
  if (!parsed.success)
    throw new GrantkeeperError('damaged_record', `client ${name} has damaged authorization parameters`);
  return parsed.data;
}

export function toApiKey(row: ApiKeyRowShape): ApiKey {
  if (row.role !== 'admin' && row.role !== 'reader') {
    throw new Error(`an API key row holds an unknown role "${row.role.slice(0, 20)}"`);
  }
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    grantIds: row.role === 'reader' ? (row.grantIds ?? []) : null,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
  };
}

/** A new API key's row: a reader's grants, none for an admin (who reaches every grant). */
export function apiKeyValues(input: { name: string; keyHash: string; now: number } & ApiKeyAccess) {
  return {
    id: newId('k'),
    name: input.name,
    keyHash: input.keyHash,
    role: input.role,
    grantIds: input.role === 'reader' ? input.grantIds : null,
    createdAt: input.now,
    lastUsedAt: null,
  };
}

export function toHashedApiKey(row: ApiKeyRowShape & { keyHash: string }): ApiKey & { keyHash: string } {
  return { ...toApiKey(row), keyHash: row.keyHash };
}

export const apiKeyNameTaken = (name: string) =>
  new GrantkeeperError('name_taken', `an API key named "${name}" already exists`);

/** A pending authorization's row: its code verifier sealed to its state's hash. */
export function sealedAuthorization(pending: PendingAuthorization, sealer: Sealer): PendingAuthorization {
  return {
    ...pending,
    codeVerifier: sealer.seal(pending.codeVerifier, codeVerifierContext(pending.stateHash)),
  };
}

/** A taken authorization as the port returns it: opened, or undefined once expired at `now`. */
export function openedAuthorization(
  taken: PendingAuthorization | undefined,
  now: number,
  sealer: Sealer,
): PendingAuthorization | undefined {
  if (!taken || taken.expiresAt <= now) return undefined;
  return { ...taken, codeVerifier: sealer.open(taken.codeVerifier, codeVerifierContext(taken.stateHash)) };
}
