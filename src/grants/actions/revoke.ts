import { randomBytes } from 'node:crypto';
import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import { isLive, type StoredGrant } from '../grant.js';
import type { GrantActionContext } from './context.js';

export interface RevokeOutcome {
  /** The provider confirmed the revocation (RFC 7009); false when it has no revocation endpoint. */
  revoked: boolean;
  removed: boolean;
  provider: string;
}

/**
 * RFC 7009 revocation at the provider, where it has an endpoint, then removal here. The grant's
 * lease is held meanwhile, so no refresh rotates the refresh token while it is being revoked (which
 * would leave a live one behind); a grant in doubt is not revoked until the doubt is over.
 */
export async function revokeGrant(ctx: GrantActionContext, stored: StoredGrant): Promise<RevokeOutcome> {
  const { grant } = stored;
  const client = await ctx.clients.openById(grant.clientRef);
  if (!client)
    throw new GrantkeeperError(
      'unknown_client',
      `grant ${grant.label} has no client; use grantkeeper remove`,
    );
  const endpoint = client.profile.revocationEndpoint;
  let revoked = false;
  if (endpoint) {
    const owner = `revoke.${randomBytes(4).toString('hex')}`;
    const live = isLive(grant.state);
    const held = live
      ? await ctx.grants.claim(grant.id, grant.version, owner, ctx.leaseMs, ctx.inDoubtGraceMs)
      : stored;
    if (!held) {
      throw new GrantkeeperError(
        'unavailable',
        `grant ${grant.label} is being refreshed right now, or an earlier refresh's answer may still be on its way; try again later`,
      );
    }
    try {
      await ctx.tokenClient.revoke(client.target, endpoint, held.tokens.refreshToken(), 'refresh_token');
      revoked = true;
    } catch (err) {
      if (live) await ctx.grants.releaseLease(grant.id, owner, grant.leaseSentAt);
      throw new GrantkeeperError(
        'revoke_failed',
        `the provider did not revoke ${grant.label} (${(err as Error).message}); it is kept: retry, or drop it with grantkeeper remove`,
      );
    }
  }
  const removed = await ctx.grants.remove(grant.id);
  return { revoked, removed, provider: client.profile.kind };
}
