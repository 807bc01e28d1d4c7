import { type Grant, hasRefreshToken } from '../grants/grant.js';
import type { RefreshTokenEnd } from './refresh-plan.js';

/** How far ahead a grant can be kept, and by when someone must consent again. */
export interface GrantHorizon {
  /** The hard end no refresh extends; null: refreshes keep it alive indefinitely. */
  renewableUntil: RefreshTokenEnd | null;
  /**
   * The earlier of the hard end and the idle deadline (the refresh token left unused for the
   * provider's idle limit since its last use): past it only a new consent brings the grant back.
   * A refresh moves the idle deadline on; nothing moves the hard end.
   */
  needsConsentBy: RefreshTokenEnd | null;
}

export type HorizonFacts = Pick<
  Grant,
  'kind' | 'refreshTokenUsedAt' | 'refreshExpiresAt' | 'refreshExpiresReason'
>;

const DAY_MS = 24 * 3600_000;

export function idleDeadline(refreshTokenUsedAt: number, idleLimitSec: number): RefreshTokenEnd {
  const days = Math.round((idleLimitSec * 1000) / DAY_MS);
  return {
    at: refreshTokenUsedAt + idleLimitSec * 1000,
    reason: `idle limit: the provider drops a refresh token left unused for ${days} days`,
  };
}

/** Pure: the grant's row and its provider's idle limit decide it. Kinds without a refresh token have neither. */
export function grantHorizon(grant: HorizonFacts, idleLimitSec: number | undefined): GrantHorizon {
  if (!hasRefreshToken(grant.kind)) return { renewableUntil: null, needsConsentBy: null };
  const hard =
    grant.refreshExpiresAt === null
      ? null
      : { at: grant.refreshExpiresAt, reason: grant.refreshExpiresReason ?? 'refresh token end' };
  const idle = idleLimitSec === undefined ? null : idleDeadline(grant.refreshTokenUsedAt, idleLimitSec);
  const earliest = hard && idle ? (hard.at <= idle.at ? hard : idle) : (hard ?? idle);
  return { renewableUntil: hard, needsConsentBy: earliest };
}

/** Something that will stop working unless someone acts: a grant's consent deadline or a client secret's end. */
export interface AheadItem {
  kind: 'grant' | 'client_secret';
  /** The grant's label, or the client's name. */
  name: string;
  id: string;
  at: number;
  reason: string;
}

/**
 * What dies within `horizonMs` of `now`, soonest first: the grants `listExpiring` found (with their
 * client's idle limit) and every client secret with an end date. Pure, for `status`.
 */
export function aheadOf(
  grants: ReadonlyArray<HorizonFacts & { id: string; label: string; clientRef: string }>,
  clients: ReadonlyArray<{
    id: string;
    name: string;
    hasSecret: boolean;
    secret: { expiresAt: number | null };
    profile: { refreshIdleLimitSec: number };
  }>,
  now: number,
  horizonMs: number,
): AheadItem[] {
  const idleOf = new Map(clients.map((c) => [c.id, c.profile.refreshIdleLimitSec]));
  const items: AheadItem[] = [];
  for (const g of grants) {
    const deadline = grantHorizon(g, idleOf.get(g.clientRef)).needsConsentBy;
    if (deadline && deadline.at <= now + horizonMs) {
      items.push({ kind: 'grant', name: g.label, id: g.id, at: deadline.at, reason: deadline.reason });
    }
  }
  for (const c of clients) {
    const ends = c.secret.expiresAt;
    if (c.hasSecret && ends !== null && ends <= now + horizonMs) {
      items.push({
        kind: 'client_secret',
        name: c.name,
        id: c.id,
        at: ends,
        reason: 'the client secret ends',
      });
    }
  }
  return items.sort((a, b) => a.at - b.at || a.id.localeCompare(b.id));
}
