import { SealError, type Sealer } from '../crypto/sealer.js';
import { UserError } from '../errors/user-error.js';
import type { RekeyReport } from '../grants/ports.js';

/** One sealed value of the store, read inside the adapter's transaction, with how to write it back. */
export interface SealedValue {
  kind: keyof RekeyReport['resealed'];
  context: string;
  sealed: string;
  write(resealed: string): void;
}

const MAX_LISTED_FAILURES = 5;

/**
 * Reseals every value not yet under the sealer's primary key. Every value is opened before the
 * first one is written, so a value no loaded key opens aborts the whole run with nothing changed;
 * the adapter runs this inside one transaction that no refresh can commit into.
 */
export function resealValues(values: readonly SealedValue[], sealer: Sealer): RekeyReport {
  const primary = sealer.primaryKeyId;
  const opened: Array<{ value: SealedValue; plain: string }> = [];
  const failures: string[] = [];
  const before: Record<string, number> = {};
  for (const value of values) {
    try {
      const keyId = sealer.keyIdOf(value.sealed);
      before[keyId] = (before[keyId] ?? 0) + 1;
      opened.push({ value, plain: sealer.open(value.sealed, value.context) });
    } catch (err) {
      if (!(err instanceof SealError)) throw err;
      // SealError messages name contexts and key ids, never the value.
      failures.push(err.message);
    }
  }
  if (failures.length > 0) {
    const listed = failures.slice(0, MAX_LISTED_FAILURES).join('; ');
    const more =
      failures.length > MAX_LISTED_FAILURES ? ` (and ${failures.length - MAX_LISTED_FAILURES} more)` : '';
    throw new UserError(
      `rekey changed nothing: ${failures.length} of ${values.length} sealed values cannot be opened with the loaded keys ` +
        `(${sealer.keyIds().join(', ')}); add the key that sealed them to GRANTKEEPER_PREVIOUS_KEYS. ${listed}${more}`,
    );
  }
  const resealed: RekeyReport['resealed'] = {
    accessTokens: 0,
    refreshTokens: 0,
    clientSecrets: 0,
    keyCheck: 0,
  };
  let alreadyCurrent = 0;
  for (const { value, plain } of opened) {
    if (sealer.keyIdOf(value.sealed) === primary) {
      alreadyCurrent++;
      continue;
    }
    value.write(sealer.seal(plain, value.context));
    resealed[value.kind]++;
  }
  return { keyId: primary, resealed, alreadyCurrent, before, total: values.length };
}
