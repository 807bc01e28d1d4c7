import type { Store } from '../../db/connection.js';
import { SealError, type Sealer } from '../crypto/sealer.js';
import { UserError } from '../errors/user-error.js';
import { secretContext } from './client-store.js';
import { sealContext } from './grant-store.js';
import { KEY_CHECK, KEY_CHECK_CONTEXT } from './key-check.js';

/** What `grantkeeper rekey` did; counts only, never a value. */
export interface RekeyReport {
  /** The primary key every value is now sealed under. */
  keyId: string;
  /** Values sealed under another key, now resealed under the primary one. */
  resealed: { accessTokens: number; refreshTokens: number; clientSecrets: number; keyCheck: number };
  /** Values that were already sealed under the primary key (left untouched). */
  alreadyCurrent: number;
  /** Key ids the store held before, with how many values each sealed. */
  before: Record<string, number>;
  total: number;
}

interface SealedValue {
  kind: keyof RekeyReport['resealed'];
  context: string;
  sealed: string;
  write(resealed: string): void;
}

const MAX_LISTED_FAILURES = 5;

/**
 * Reseals every secret in the store (grant access and refresh tokens, client secrets, the key-check
 * value) under the sealer's primary key, so the keys in GRANTKEEPER_PREVIOUS_KEYS can be dropped.
 *
 * Everything happens in one IMMEDIATE transaction: no other process can commit a refresh between our
 * read and our write (which would otherwise let us put back tokens it had just rotated), and every
 * value is opened before the first one is written, so a value no loaded key opens aborts the whole
 * run with nothing changed.
 */
export function rekeyStore(store: Store, sealer: Sealer): RekeyReport {
  const { sqlite } = store;
  const primary = sealer.primaryKeyId;
  const run = sqlite.transaction((): RekeyReport => {
    const values: SealedValue[] = [];
    const updateGrant = {
      access: sqlite.prepare('update grants set access_token_sealed = ? where id = ?'),
      refresh: sqlite.prepare('update grants set refresh_token_sealed = ? where id = ?'),
    };
    const updateClient = sqlite.prepare('update clients set client_secret_sealed = ? where id = ?');
    const updateMeta = sqlite.prepare('update meta set value = ? where key = ?');

    const grantRows = sqlite
      .prepare('select id, access_token_sealed as a, refresh_token_sealed as r from grants order by id')
      .all() as Array<{ id: string; a: string; r: string }>;
    for (const g of grantRows) {
      values.push({
        kind: 'accessTokens',
        context: sealContext(g.id, 'access_token'),
        sealed: g.a,
        write: (v) => updateGrant.access.run(v, g.id),
      });
      values.push({
        kind: 'refreshTokens',
        context: sealContext(g.id, 'refresh_token'),
        sealed: g.r,
        write: (v) => updateGrant.refresh.run(v, g.id),
      });
    }
    const clientRows = sqlite
      .prepare(
        'select id, client_secret_sealed as s from clients where client_secret_sealed is not null order by id',
      )
      .all() as Array<{ id: string; s: string }>;
    for (const c of clientRows) {
      values.push({
        kind: 'clientSecrets',
        context: secretContext(c.id),
        sealed: c.s,
        write: (v) => updateClient.run(v, c.id),
      });
    }
    const keyCheck = sqlite.prepare('select value from meta where key = ?').get(KEY_CHECK) as
      | { value: string }
      | undefined;
    if (keyCheck) {
      values.push({
        kind: 'keyCheck',
        context: KEY_CHECK_CONTEXT,
        sealed: keyCheck.value,
        write: (v) => updateMeta.run(v, KEY_CHECK),
      });
    }

    // Open everything first: one value we cannot open stops the run before anything is written.
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
  });
  return run.immediate();
}
