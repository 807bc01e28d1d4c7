import type { AccessToken } from '../../refresh/access-token-reader.js';
import { TokenReadError } from '../../refresh/access-token-reader.js';
import type { Grant, StoredGrant } from '../grant.js';
import type { GrantActionContext } from './context.js';

export type RetryOutcome =
  | { ok: true; grant: Grant; token: AccessToken }
  | { ok: false; grant: Grant; error: TokenReadError };

/**
 * An operator's retry (`grantkeeper retry`, POST /v1/grants/:id/retry), one behaviour for both: a
 * stopped grant (after fixing its client, restoring its key) is revived as `failing`, and the grant
 * is refreshed now under the lease, with the outcome reported. Undefined: the grant was removed.
 */
export async function retryGrant(
  ctx: Pick<GrantActionContext, 'grants' | 'reader' | 'now'>,
  stored: StoredGrant,
): Promise<RetryOutcome | undefined> {
  const revived = await ctx.grants.reviveForRetry(stored.grant.id, (ctx.now ?? Date.now)());
  if (!revived) return undefined;
  const current = await ctx.grants.get(revived.id);
  if (!current) return undefined;
  try {
    const token = await ctx.reader.readGrant(current, { force: true, operator: true });
    const after = (await ctx.grants.get(revived.id))?.grant ?? current.grant;
    return { ok: true, grant: after, token };
  } catch (err) {
    if (!(err instanceof TokenReadError)) throw err;
    const after = (await ctx.grants.get(revived.id))?.grant ?? current.grant;
    return { ok: false, grant: after, error: err };
  }
}
