/**
 * The values of the refresh path's writes and what their results mean, shared by both adapters:
 * each binds these values into its own statements (named placeholders in SQLite, positions in
 * PostgreSQL), so the sealing and the "keep the stored value" rules live in one place.
 */
import type { Sealer } from '../crypto/sealer.js';
import { isLive, type RefreshEvent, type StoredGrant } from '../grants/grant.js';
import type {
  CommitResult,
  ConsentTarget,
  FailureRecord,
  SaveConsentInput,
  TokenUpdate,
} from '../grants/ports.js';
import { newId } from './ids.js';
import { asGrantKind } from './rows.js';
import { sealContext } from './seal-contexts.js';

/** A committed token response's values; a null keeps the stored value (coalesce). */
export function commitValues(id: string, update: TokenUpdate, sealer: Sealer) {
  return {
    access: sealer.seal(update.accessToken, sealContext(id, 'access_token')),
    // No refresh token back means no rotation.
    refresh:
      update.refreshToken === undefined
        ? null
        : sealer.seal(update.refreshToken, sealContext(id, 'refresh_token')),
    tokenType: update.tokenType ?? null,
    scope: update.scope ?? null,
    expiresAt: update.accessExpiresAt,
    lifetimeMs: update.accessLifetimeMs,
    usedAt: update.refreshTokenUsedAt,
    nextAt: update.nextRefreshAt,
    // A refresh that states no end does not lift the stored one.
    refreshEndsAt: update.refreshExpires?.at ?? null,
    refreshEndsReason: update.refreshExpires?.reason ?? null,
  };
}

/** A commit's answer: the grant as stored, and whether it had stopped meanwhile (invariant 2). */
export function toCommitResult(stored: StoredGrant | undefined): CommitResult | undefined {
  return stored && { ...stored, conflict: !isLive(stored.grant.state) };
}

/** The values of a rotated refresh token kept from an unusable answer, with its failure. */
export function rotationOnlyValues(
  id: string,
  update: { refreshToken: string; refreshTokenUsedAt: number },
  failure: { nextRefreshAt: number; message: string },
  sealer: Sealer,
) {
  return {
    refresh: sealer.seal(update.refreshToken, sealContext(id, 'refresh_token')),
    usedAt: update.refreshTokenUsedAt,
    nextAt: failure.nextRefreshAt,
    message: failure.message,
  };
}

/** A failed attempt's values; a null `nextAt` keeps the planned refresh. */
export function failureValues(failure: FailureRecord) {
  return {
    state: failure.state,
    message: failure.message,
    nextAt: failure.nextRefreshAt ?? null,
    // An answer settles the send; a lost one leaves the grant in doubt.
    keepSent: failure.inDoubt === true,
  };
}

/** An event row's values, every optional field null. */
export function eventValues(event: RefreshEvent) {
  return {
    at: event.at,
    trigger: event.trigger,
    outcome: event.outcome,
    durationMs: event.durationMs ?? null,
    httpStatus: event.httpStatus ?? null,
    errorCode: event.errorCode ?? null,
    message: event.message ?? null,
    rotated: event.rotated ?? null,
  };
}

/**
 * What storing a consent writes: the new values over the grant already holding its label (a
 * re-consent, once `mayReplace` allows it: it throws before anything is written), or a new grant.
 */
export function consentWrite(
  input: SaveConsentInput,
  existing: { id: string; clientRef: string; subject: string | null; kind: string } | undefined,
  sealer: Sealer,
  mayReplace?: (existing: ConsentTarget) => void,
) {
  if (existing) {
    const { id, clientRef, subject } = existing;
    mayReplace?.({ id, clientRef, subject, kind: asGrantKind(existing.kind) });
    return { id, replace: consentValues(input, id, subject, sealer) };
  }
  const id = newId('g');
  const values = consentValues(input, id, undefined, sealer);
  return {
    id,
    insert: { ...values, id, label: input.label, version: 0, lastRefreshedAt: null, createdAt: input.now },
  };
}

/** The consent's columns, common to a first consent and a re-consent of the same label. */
function consentValues(
  input: SaveConsentInput,
  id: string,
  existingSubject: string | null | undefined,
  sealer: Sealer,
) {
  return {
    clientRef: input.clientRef,
    kind: input.kind ?? 'authorization_code',
    tokenRequest: input.tokenRequest ?? null,
    subject: input.subject ?? existingSubject ?? null,
    state: 'active' as const,
    accessTokenSealed: sealer.seal(input.accessToken, sealContext(id, 'access_token')),
    refreshTokenSealed: sealer.seal(input.refreshToken, sealContext(id, 'refresh_token')),
    tokenType: input.tokenType ?? null,
    scope: input.scope ?? null,
    accessExpiresAt: input.accessExpiresAt,
    accessLifetimeMs: input.accessLifetimeMs,
    refreshTokenUsedAt: input.refreshTokenUsedAt,
    refreshExpiresAt: input.refreshExpires?.at ?? null,
    refreshExpiresReason: input.refreshExpires?.reason ?? null,
    nextRefreshAt: input.nextRefreshAt,
    // New tokens settle whatever was in flight with the old ones.
    leaseOwner: null,
    leaseUntil: null,
    leaseSentAt: null,
    consecutiveFailures: 0,
    lastError: null,
    lastErrorAt: null,
    updatedAt: input.now,
  };
}
