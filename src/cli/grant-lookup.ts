import type { Grant, StoredGrant } from '../grants/grant.js';
import type { Client } from '../grants/ports.js';
import type { StoreContext } from '../service/store-context.js';
import { UserError } from './user-error.js';

export async function clientsById(app: StoreContext): Promise<Map<string, Client>> {
  return new Map((await app.clients.list()).map((c) => [c.id, c]));
}

export async function findGrant(app: StoreContext, ref: string): Promise<StoredGrant> {
  const stored = await app.grants.find(ref);
  if (!stored) throw new UserError(`no grant has the id or label "${ref}" (grantkeeper grants)`);
  return stored;
}

/** What `seed --json` and `grant add --json` print about the grant they stored, in the API's names. */
export function storedGrantView(
  grant: Grant,
  clientName: string,
  outcome: { replaced: boolean; scheduled: boolean },
) {
  return {
    id: grant.id,
    label: grant.label,
    client: clientName,
    kind: grant.kind,
    subject: grant.subject,
    scope: grant.scope,
    replaced: outcome.replaced,
    scheduled: outcome.scheduled,
    access_expires_at: new Date(grant.accessExpiresAt).toISOString(),
    next_refresh_at: new Date(grant.nextRefreshAt).toISOString(),
  };
}
