import type { Grant } from '../grant.js';
import type { GrantActionContext } from './context.js';

/**
 * Removes a grant here without telling the provider; its queued job finds it gone and does nothing.
 * False: it was already gone.
 */
export function removeGrant(ctx: Pick<GrantActionContext, 'grants'>, grant: Grant): Promise<boolean> {
  return ctx.grants.remove(grant.id);
}
