import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { planAfterTokenResponse } from '../../policy/refresh-plan.js';
import { type Grant, type GrantMode, hasRefreshToken, isLive } from '../grant.js';
import type { GrantActionContext } from './context.js';

/**
 * Switches a grant between `eager` and `keepalive` and replans its next refresh from the last token
 * response (issued at `refreshTokenUsedAt`, living `accessLifetimeMs`), exactly as a refresh would
 * have planned it in that mode. The job for the old plan is dropped when it has not started yet.
 */
export async function setGrantMode(
  ctx: Pick<GrantActionContext, 'grants' | 'clients' | 'scheduler' | 'timing' | 'now'>,
  grant: Grant,
  mode: GrantMode,
): Promise<Grant> {
  if (grant.mode === mode) return grant;
  if (mode === 'keepalive' && !hasRefreshToken(grant.kind)) {
    throw new GrantkeeperError(
      'not_applicable',
      `grant ${grant.label} is a ${grant.kind} grant: it has no refresh token to keep alive, and its next token is always fetched ahead of expiry`,
    );
  }
  const now = (ctx.now ?? Date.now)();
  const client = await ctx.clients.get(grant.clientRef);
  if (!client)
    throw new GrantkeeperError('unknown_client', `grant ${grant.label} names a client that no longer exists`);
  const plan = planAfterTokenResponse(
    { expiresIn: grant.accessLifetimeMs / 1000 },
    grant.refreshTokenUsedAt,
    now,
    client.profile,
    ctx.timing,
    mode,
  );
  const updated = await ctx.grants.setMode(grant.id, mode, plan.nextRefreshAt, now);
  if (!updated) throw new GrantkeeperError('not_found', `grant ${grant.label} was removed`);
  await ctx.scheduler.cancel(grant);
  if (isLive(updated.state)) await ctx.scheduler.schedule([updated]);
  return updated;
}
