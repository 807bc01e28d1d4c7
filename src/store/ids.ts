import { randomBytes } from 'node:crypto';

/** Short random ids with a type prefix: never derived from labels, so they leak nothing. */
export function newId(prefix: 'g' | 'c'): string {
  return `${prefix}_${randomBytes(9).toString('base64url')}`;
}
