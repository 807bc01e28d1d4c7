import type { GrantState } from '../grants/grant.js';
import type { ProviderKind } from '../oauth/providers.js';
import type { PaceTransition } from '../pacing/client-pacer.js';
import type { RefreshResult, RefreshTrigger } from './outcomes.js';

/** One token request made under a lease, as metrics and alerts see it. */
export interface RefreshAttempt {
  grantId: string;
  /** `unknown` when the grant's client could not be found. */
  provider: ProviderKind | 'unknown';
  trigger: RefreshTrigger;
  durationMs: number;
  /** The grant as it was before the attempt. */
  previousState: GrantState;
  previousFailures: number;
}

/**
 * Told about every attempt after its outcome is committed. Observers must be quick and must not
 * throw into the refresh path (errors are caught and logged); slow work goes to a queue.
 */
export interface RefreshObserver {
  onRefreshResult(attempt: RefreshAttempt, result: RefreshResult): void;
  /** A client became degraded or recovered; told in exactly one process across the replicas. */
  onClientTransition?(client: { id: string; name: string }, transition: PaceTransition): void;
}
