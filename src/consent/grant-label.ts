import { randomBytes } from 'node:crypto';
import type { ConsentTarget } from '../grants/ports.js';
import { GRANT_ID_PATTERN } from '../store/ids.js';
import { plainText } from '../util/plain-text.js';
import type { AccountIdentity } from './identity.js';

/** Grant labels: what operators type (`@ourbot`, `ops@example.com`), safe in a URL path and a shell. */
export const LABEL_PATTERN = /^[A-Za-z0-9@][A-Za-z0-9._@+-]{0,127}$/;

/** Why `label` cannot name a grant, or undefined when it can. */
export function labelProblem(label: string): string | undefined {
  if (!LABEL_PATTERN.test(label)) {
    return `label "${plainText(label, 80)}" is not valid: letters, digits, "@", ".", "_", "+" or "-", at most 128`;
  }
  // Operators name grants by id or label (grant show, token, revoke), so an id-shaped label is ambiguous.
  if (GRANT_ID_PATTERN.test(label)) {
    return `label "${label}" has the shape of a grant id (g_ and 12 characters), which would make it ambiguous: choose another`;
  }
  return undefined;
}

/** The account's name when it makes a valid label, else the client name with the subject or a random tail. */
export function deriveLabel(identity: AccountIdentity, clientName: string): string {
  const tail = randomBytes(4).toString('hex');
  const candidates = [
    identity.name,
    identity.subject && `${clientName}-${identity.subject}`,
    `${clientName}-${tail}`,
  ];
  return candidates.find((c) => c && labelProblem(c) === undefined) ?? `grant-${tail}`;
}

/**
 * Whether a consent may replace the grant its label already names without the operator choosing
 * it: only a re-consent of the same account (same client, same known subject). A derived label
 * (`seed` without --label) and a consent link's label both keep this rule: anything else would
 * hand one account's grant to another. Undefined means yes; the message says what to do instead.
 */
export function takeoverProblem(
  label: string,
  existing: ConsentTarget,
  incoming: { clientRef: string; subject?: string },
  via: 'seed' | 'link' = 'seed',
): string | undefined {
  const why = takeoverReason(label, existing, incoming);
  if (!why) return undefined;
  if (via === 'link') {
    return `this link renews grant "${label}", but ${why}; nothing was stored. Sign in with the account that grant belongs to, or ask for a link with a new label`;
  }
  return (
    `the consenting account is named "${label}", but ${why}; nothing was stored. ` +
    `Seed again with --label: a new label keeps both grants, --label ${label} replaces that grant's tokens with this account's`
  );
}

function takeoverReason(
  label: string,
  existing: ConsentTarget,
  incoming: { clientRef: string; subject?: string },
): string | undefined {
  const grant = `grant "${label}" (${existing.id})`;
  if (existing.clientRef !== incoming.clientRef) return `${grant} belongs to another client`;
  if (!existing.subject)
    return `${grant} was stored without an account id, so this cannot be shown to be the same account`;
  if (!incoming.subject)
    return `the provider did not say which account consented, so it cannot be shown to own ${grant}`;
  if (existing.subject !== incoming.subject) return `${grant} belongs to another account`;
  return undefined;
}
