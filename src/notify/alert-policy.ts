import { isInDoubt } from '../grants/grant.js';
import type { AlertView } from '../grants/ports.js';

export const ALERT_EVENTS = [
  'grant.failing',
  'grant.needs_reconsent',
  'grant.client_error',
  'grant.broken',
  'grant.in_doubt',
  'grant.conflict',
  'grant.recovered',
  /** Warned ahead: a grant's hard end or consent deadline is within a window (src/policy/expiry-warnings.ts). */
  'grant.expiring',
  'queue.paused',
  'queue.resumed',
  'client.degraded',
  'client.failing',
  'client.recovered',
  /** Warned ahead: a client secret's end date is within a window. */
  'client.secret_expiring',
] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];
export type GrantAlertEvent = Exclude<Extract<AlertEvent, `grant.${string}`>, AheadAlertEvent>;
/** Warnings ahead of a deadline, as opposed to reports of a condition. */
export type AheadAlertEvent = 'grant.expiring' | 'client.secret_expiring';
export type QueueAlertEvent = Extract<AlertEvent, `queue.${string}`>;
export type ClientAlertEvent = Exclude<Extract<AlertEvent, `client.${string}`>, AheadAlertEvent>;

export function isAheadEvent(event: AlertEvent): event is AheadAlertEvent {
  return event === 'grant.expiring' || event === 'client.secret_expiring';
}

export function isQueueEvent(event: AlertEvent): event is QueueAlertEvent {
  return event.startsWith('queue.');
}

export function isClientEvent(event: AlertEvent): event is ClientAlertEvent {
  return event.startsWith('client.');
}

/**
 * Grant events whose webhook carries a fresh one-time consent link (when a public URL is set): the
 * account's owner is who can act on them, before the grant dies or after.
 */
export const CONSENT_LINK_EVENTS: ReadonlySet<GrantAlertEvent | AheadAlertEvent> = new Set([
  'grant.needs_reconsent',
  'grant.expiring',
]);

export interface AlertDecision {
  event: GrantAlertEvent;
  /** What `alertedState` becomes once the alert is queued; null means nothing outstanding. */
  alertedState: string | null;
}

/**
 * Which alert a grant's current condition calls for, given the last one sent. Pure, so the refresh
 * observer, the periodic sweep, the consent hook and the delivering worker all decide alike; the
 * store's compare-and-swap on `alertedState` then makes each transition alert once.
 */
export function decideAlert(grant: AlertView, failingAfter: number, now: number): AlertDecision | undefined {
  const alerted = grant.alertedState;
  switch (grant.state) {
    case 'needs_reconsent':
    case 'client_error':
    case 'broken':
      return alerted === grant.state
        ? undefined
        : { event: `grant.${grant.state}`, alertedState: grant.state };
    case 'failing':
    case 'active':
      if (isInDoubt(grant, now)) {
        return alerted === 'in_doubt' ? undefined : { event: 'grant.in_doubt', alertedState: 'in_doubt' };
      }
      if (grant.state === 'failing') {
        return grant.consecutiveFailures >= failingAfter && alerted !== 'failing'
          ? { event: 'grant.failing', alertedState: 'failing' }
          : undefined;
      }
      return alerted === null ? undefined : { event: 'grant.recovered', alertedState: null };
  }
}

/**
 * Whether a queued alert still tells the truth about the grant, decided from the store at delivery
 * time: the job only names it. A job nobody's decision produced, or one overtaken by a newer
 * condition, sends nothing.
 */
export function alertStillHolds(
  event: GrantAlertEvent,
  grant: AlertView,
  conflictNear: (at: number) => boolean,
  at: number,
): boolean {
  switch (event) {
    case 'grant.conflict':
      return conflictNear(at);
    case 'grant.recovered':
      return grant.state === 'active' && grant.alertedState === null;
    case 'grant.in_doubt':
      return grant.alertedState === 'in_doubt';
    case 'grant.failing':
      return grant.state === 'failing' && grant.alertedState === 'failing';
    default:
      return grant.state === event.slice('grant.'.length) && grant.alertedState === grant.state;
  }
}
