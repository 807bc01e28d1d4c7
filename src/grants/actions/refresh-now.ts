import type { AccessToken } from '../../refresh/access-token-reader.js';
import type { StoredGrant } from '../grant.js';
import type { GrantActionContext } from './context.js';

/**
 * Refreshes a grant now and waits for the outcome, under the same lease the worker uses (the CLI's
 * `refresh`, the API's POST /refresh, a token read after a 401). A forced refresh within a few
 * seconds of the last one answers from it (invariant 10). Throws a TokenReadError when no token
 * could be had.
 */
export function refreshNow(
  ctx: Pick<GrantActionContext, 'reader'>,
  stored: StoredGrant,
): Promise<AccessToken> {
  return ctx.reader.readGrant(stored, { force: true });
}
