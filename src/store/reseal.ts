import { SealError, type Sealer } from '../crypto/sealer.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { RekeyReport } from '../grants/ports.js';
import {
  KEY_CHECK_CONTEXT,
  KEY_CHECK_KEY,
  previousSecretContext,
  privateKeyContext,
  sealContext,
  secretContext,
} from './seal-contexts.js';

/** One sealed value of the store, read inside the adapter's transaction, with how to write it back. */
export interface SealedValue {
  kind: keyof RekeyReport['resealed'];
  context: string;
  sealed: string;
  write(resealed: string): void;
}

/** The statements that read every sealed value, the same SQL on every adapter (rows as SealedRows). */
export const SEALED_GRANTS_SQL =
  'select id, access_token_sealed as a, refresh_token_sealed as r from grants order by id';
export const SEALED_CLIENTS_SQL =
  'select id, client_secret_sealed as s, previous_secret_sealed as p, private_key_sealed as k from clients ' +
  'where client_secret_sealed is not null or previous_secret_sealed is not null or private_key_sealed is not null order by id';

export interface SealedRows {
  grants: ReadonlyArray<{ id: string; a: string; r: string }>;
  clients: ReadonlyArray<{ id: string; s: string | null; p: string | null; k: string | null }>;
  /** The `meta` key-check value; undefined in a store that has none yet. */
  keyCheck: string | undefined;
}

/** How an adapter writes a resealed value back: a statement run at once, or one queued. */
export interface SealedWriters {
  accessToken(grantId: string, sealed: string): void;
  refreshToken(grantId: string, sealed: string): void;
  clientSecret(clientId: string, sealed: string): void;
  previousClientSecret(clientId: string, sealed: string): void;
  clientKey(clientId: string, sealed: string): void;
  keyCheck(sealed: string): void;
}

/** Writes one sealed column of the row whose `key` column is `id`, as the adapter's statement. */
export type SealedColumnWriter = (
  table: 'grants' | 'clients' | 'meta',
  column: string,
  key: 'id' | 'key',
) => (id: string, sealed: string) => void;

/** Where each resealed value goes back, written by the adapter's own statements. */
export function sealedWriters(column: SealedColumnWriter): SealedWriters {
  const keyCheck = column('meta', 'value', 'key');
  return {
    accessToken: column('grants', 'access_token_sealed', 'id'),
    refreshToken: column('grants', 'refresh_token_sealed', 'id'),
    clientSecret: column('clients', 'client_secret_sealed', 'id'),
    previousClientSecret: column('clients', 'previous_secret_sealed', 'id'),
    clientKey: column('clients', 'private_key_sealed', 'id'),
    keyCheck: (sealed) => keyCheck(KEY_CHECK_KEY, sealed),
  };
}

/** Every sealed value of a store with its seal context, for resealValues. */
export function sealedValues(rows: SealedRows, write: SealedWriters): SealedValue[] {
  const values: SealedValue[] = [];
  for (const g of rows.grants) {
    values.push(
      {
        kind: 'accessTokens',
        context: sealContext(g.id, 'access_token'),
        sealed: g.a,
        write: (v) => write.accessToken(g.id, v),
      },
      {
        kind: 'refreshTokens',
        context: sealContext(g.id, 'refresh_token'),
        sealed: g.r,
        write: (v) => write.refreshToken(g.id, v),
      },
    );
  }
  for (const c of rows.clients) {
    if (c.s !== null) {
      values.push({
        kind: 'clientSecrets',
        context: secretContext(c.id),
        sealed: c.s,
        write: (v) => write.clientSecret(c.id, v),
      });
    }
    if (c.p !== null) {
      values.push({
        kind: 'clientSecrets',
        context: previousSecretContext(c.id),
        sealed: c.p,
        write: (v) => write.previousClientSecret(c.id, v),
      });
    }
    if (c.k !== null) {
      values.push({
        kind: 'clientKeys',
        context: privateKeyContext(c.id),
        sealed: c.k,
        write: (v) => write.clientKey(c.id, v),
      });
    }
  }
  if (rows.keyCheck !== undefined) {
    values.push({
      kind: 'keyCheck',
      context: KEY_CHECK_CONTEXT,
      sealed: rows.keyCheck,
      write: write.keyCheck,
    });
  }
  return values;
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
    throw new GrantkeeperError(
      'sealing_key_unusable',
      `rekey changed nothing: ${failures.length} of ${values.length} sealed values cannot be opened with the loaded keys ` +
        `(${sealer.keyIds().join(', ')}); add the key that sealed them to GRANTKEEPER_PREVIOUS_KEYS. ${listed}${more}`,
    );
  }
  const resealed: RekeyReport['resealed'] = {
    accessTokens: 0,
    refreshTokens: 0,
    clientSecrets: 0,
    clientKeys: 0,
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
