import type { AlertView } from '../store/grant-store.js';

export const ALERT_EVENTS = [
  'grant.failing',
  'grant.needs_reconsent',
  'grant.client_error',
  'grant.recovered',
] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export interface AlertDecision {
  event: AlertEvent;
  /** What `alertedState` becomes once the alert is queued; null means nothing outstanding. */
  alertedState: string | null;
}

/**
 * Which alert a grant's current state calls for, given the last one sent. Pure, so the refresh
 * observer, the periodic sweep and the consent hook all decide alike; the store's compare-and-swap
 * on `alertedState` then makes each transition alert once.
 */
export function decideAlert(grant: AlertView, failingAfter: number): AlertDecision | undefined {
  const alerted = grant.alertedState;
  switch (grant.state) {
    case 'needs_reconsent':
    case 'client_error':
      return alerted === grant.state
        ? undefined
        : { event: `grant.${grant.state}`, alertedState: grant.state };
    case 'failing':
      return grant.consecutiveFailures >= failingAfter && alerted !== 'failing'
        ? { event: 'grant.failing', alertedState: 'failing' }
        : undefined;
    case 'active':
      return alerted === null ? undefined : { event: 'grant.recovered', alertedState: null };
  }
}
