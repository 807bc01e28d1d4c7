import type { ClientRow, GrantRow, RefreshEventRow } from '../../db/schema.js';
import { UserError } from '../errors/user-error.js';
import { isInDoubt } from '../notify/alert-policy.js';
import type { AppContext } from '../service/app-context.js';
import { isoOrNull } from './output.js';

/** A grant as listings show it: no sealed fields, times as ISO strings. */
export function grantView(grant: GrantRow, client: ClientRow | undefined) {
  return {
    id: grant.id,
    label: grant.label,
    client: client?.name ?? null,
    provider: client?.provider ?? null,
    subject: grant.subject,
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

export function eventView(event: RefreshEventRow) {
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

export function clientsById(app: AppContext): Map<string, ClientRow> {
  return new Map(app.clients.list().map((c) => [c.id, c]));
}

export function findGrant(app: AppContext, ref: string): GrantRow {
  const grant = app.grants.find(ref);
  if (!grant) throw new UserError(`no grant has the id or label "${ref}" (grantkeeper grants)`);
  return grant;
}
