import { z } from 'zod';
import type { GrantCursor } from '../../grants/ports.js';

/**
 * The `next` cursor of GET /v1/grants: the last grant's place in the listing order (label, id),
 * opaque to callers (base64url JSON) and parsed like any input on the way back.
 */
const cursorFields = z.tuple([z.string().min(1).max(200), z.string().min(1).max(200)]);

export function encodeCursor(grant: GrantCursor): string {
  return Buffer.from(JSON.stringify([grant.label, grant.id])).toString('base64url');
}

export const grantCursor = z
  .string()
  .max(600)
  .transform((text, ctx): GrantCursor => {
    try {
      const [label, id] = cursorFields.parse(JSON.parse(Buffer.from(text, 'base64url').toString('utf8')));
      return { label, id };
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: 'not a cursor this API gave out (use the last answer’s next)',
      });
      return z.NEVER;
    }
  });
