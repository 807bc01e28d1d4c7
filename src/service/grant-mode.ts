import { type GrantMode, type GrantRow, LIVE_GRANT_STATES } from '../../db/schema.js';
import { refreshJobId } from '../../jobs/refresh-queue.js';
import type { ProviderProfile } from '../oauth/providers.js';
import { planAfterTokenResponse } from '../policy/refresh-plan.js';
import type { AppContext } from './app-context.js';
import type { RefreshEngine } from './refresh-engine.js';

/**
 * Switches a grant between `eager` and `keepalive` and replans its next refresh from the last token
 * response (issued at `refreshTokenUsedAt`, living `accessLifetimeMs`), exactly as a refresh would
 * have planned it in that mode. The job for the old plan is dropped when it has not started yet.
 */
export async function setGrantMode(
  app: Pick<AppContext, 'grants' | 'clients'>,
  engine: Pick<RefreshEngine, 'refresher' | 'queue' | 'scheduler'>,
  grant: GrantRow,
  mode: GrantMode,
  now = Date.now(),
): Promise<GrantRow> {
  if (grant.mode === mode) return grant;
  const client = app.clients.get(grant.clientRef);
  if (!client) throw new Error(`grant ${grant.id} names client ${grant.clientRef}, which no longer exists`);
  const plan = planAfterTokenResponse(
    { expiresIn: grant.accessLifetimeMs / 1000 },
    grant.refreshTokenUsedAt,
    now,
    client.profile as ProviderProfile,
    engine.refresher.timing,
    mode,
  );
  const updated = app.grants.setMode(grant.id, mode, plan.nextRefreshAt, now);
  if (!updated) throw new Error(`grant ${grant.id} was removed`);
  // A live job id names its due time, so the old plan's job is found without a scan.
  await engine.queue?.remove(refreshJobId(grant.id, grant.version, grant.nextRefreshAt)).catch(() => 0);
  if (LIVE_GRANT_STATES.includes(updated.state)) await engine.scheduler?.schedule([updated]);
  return updated;
}
