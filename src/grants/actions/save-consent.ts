import type { Grant } from '../grant.js';
import type { ConsentTarget, GrantRepository, RefreshScheduler, SaveConsentInput } from '../ports.js';

export interface SavedConsent {
  grant: Grant;
  /** An existing grant with this label got the new tokens (its id and history kept). */
  replaced: boolean;
  /** Its first refresh is in the queue; otherwise the service's reconciler queues it. */
  scheduled: boolean;
}

/**
 * Stores a consented grant and queues its first refresh: seeding from the CLI, and consent
 * links, do it here. `mayReplace` refuses, inside the save's transaction, to let a consent take over
 * another account's grant.
 */
export async function saveConsent(
  ctx: { grants: GrantRepository; scheduler: RefreshScheduler },
  input: SaveConsentInput,
  mayReplace?: (existing: ConsentTarget) => void,
): Promise<SavedConsent> {
  let replaced = false;
  const grant = await ctx.grants.saveConsent(input, (existing) => {
    mayReplace?.(existing);
    replaced = true;
  });
  const scheduled = await ctx.scheduler.schedule([grant]).then(
    (n) => n > 0,
    () => false,
  );
  return { grant, replaced, scheduled };
}
