import { randomBytes } from 'node:crypto';

/** Short random ids with a type prefix: never derived from labels, so they leak nothing. */
export function newId(prefix: 'g' | 'c' | 'k'): string {
  return `${prefix}_${randomBytes(9).toString('base64url')}`;
}

/** What newId('g') yields (9 bytes are 12 base64url characters): labels must never look like it. */
export const GRANT_ID_PATTERN = /^g_[A-Za-z0-9_-]{12}$/;
