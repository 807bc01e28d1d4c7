import { eq } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import { meta } from '../../db/schema.js';
import type { Sealer } from '../crypto/sealer.js';

export const KEY_CHECK = 'key_check';
export const KEY_CHECK_CONTEXT = 'meta:key_check';
const KEY_CHECK_VALUE = 'grantkeeper';

/**
 * Proves at start-up that the loaded key opens this store, so a wrong key fails in one clear
 * line naming the key id instead of at the first refresh of every grant.
 */
export function verifySealingKey(db: Db, sealer: Sealer): void {
  const row = db.select().from(meta).where(eq(meta.key, KEY_CHECK)).get();
  if (!row) {
    db.insert(meta)
      .values({ key: KEY_CHECK, value: sealer.seal(KEY_CHECK_VALUE, KEY_CHECK_CONTEXT) })
      .run();
    return;
  }
  sealer.open(row.value, KEY_CHECK_CONTEXT);
}
