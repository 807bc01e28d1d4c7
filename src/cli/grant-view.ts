import { UserError } from '../errors/user-error.js';
import { type Grant, isInDoubt, type RecordedRefreshEvent, type StoredGrant } from '../grants/grant.js';
import type { Client } from '../grants/ports.js';
import type { AppContext } from '../service/app-context.js';
import { isoOrNull } from './output.js';

/** A grant as listings show it: no tokens, times as ISO strings. */
export function grantView(grant: Grant, client: Client | undefined) {
  return {
    id: grant.id,
    label: grant.label,
    client: client?.name ?? null,
    provider: client?.profile.kind ?? null,
    subject: grant.subject,
    kind: grant.kind,
    state: grant.state,
    mode: grant.mode,
    version: grant.version,
    scope: grant.scope,
    accessExpiresAt: isoOrNull(grant.accessExpiresAt),
    nextRefreshAt: isoOrNull(grant.nextRefreshAt),
    lastRefreshedAt: isoOrNull(grant.lastRefreshedAt),
    consecutiveFailures: grant.consecutiveFailures,
    lastError: grant.lastError,
    lastErrorAt: isoOrNull(grant.lastErrorAt),
    /** A request went out and no answer settled it since (when it went out; null when none). */
    inDoubtSince: isInDoubt(grant, Date.now()) ? isoOrNull(grant.leaseSentAt) : null,
    createdAt: isoOrNull(grant.createdAt),
  };
}

export function eventView(event: RecordedRefreshEvent) {
  return {
    at: isoOrNull(event.at),
    trigger: event.trigger,
    outcome: event.outcome,
    version: event.version,
    durationMs: event.durationMs,
    httpStatus: event.httpStatus,
    errorCode: event.errorCode,
    message: event.message,
    rotated: event.rotated,
  };
}

export async function clientsById(app: AppContext): Promise<Map<string, Client>> {
  return new Map((await app.clients.list()).map((c) => [c.id, c]));
}

export async function findGrant(app: AppContext, ref: string): Promise<StoredGrant> {
  const stored = await app.grants.find(ref);
  if (!stored) throw new UserError(`no grant has the id or label "${ref}" (grantkeeper grants)`);
  return stored;
}
