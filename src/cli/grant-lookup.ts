import { UserError } from '../errors/user-error.js';
import type { StoredGrant } from '../grants/grant.js';
import type { Client } from '../grants/ports.js';
import type { AppContext } from '../service/app-context.js';

export async function clientsById(app: AppContext): Promise<Map<string, Client>> {
  return new Map((await app.clients.list()).map((c) => [c.id, c]));
}

export async function findGrant(app: AppContext, ref: string): Promise<StoredGrant> {
  const stored = await app.grants.find(ref);
  if (!stored) throw new UserError(`no grant has the id or label "${ref}" (grantkeeper grants)`);
  return stored;
}
