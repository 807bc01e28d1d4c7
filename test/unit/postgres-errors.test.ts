import { DrizzleQueryError } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { StorageError } from '../../src/grants/storage-error.js';
import { guarded, postgresFailureOf } from '../../src/store/postgres/postgres-errors.js';

const pgError = (code: string, message = 'server said no') => Object.assign(new Error(message), { code });

describe('postgresFailureOf: SQLSTATE and socket errors into the store failures', () => {
  it.each([
    ['53100', 'disk_full'],
    ['55P03', 'locked'],
    ['57014', 'locked'],
    ['40001', 'conflict'],
    ['40P01', 'conflict'],
    ['08006', 'unavailable'],
    ['08001', 'unavailable'],
    ['57P01', 'unavailable'],
    ['57P03', 'unavailable'],
    ['53300', 'unavailable'],
    ['25006', 'unavailable'],
    ['ECONNREFUSED', 'unavailable'],
    ['ECONNRESET', 'unavailable'],
  ])('%s is %s', (code, failure) => {
    expect(postgresFailureOf(pgError(code))).toBe(failure);
    // drizzle wraps every failed query; the driver's error is its cause.
    expect(postgresFailureOf(new DrizzleQueryError('update grants …', ['sealed'], pgError(code)))).toBe(
      failure,
    );
  });

  it('knows node-postgres connection failures that carry no code', () => {
    expect(postgresFailureOf(new Error('Connection terminated unexpectedly'))).toBe('unavailable');
    expect(postgresFailureOf(new Error('timeout exceeded when trying to connect'))).toBe('unavailable');
  });

  it('leaves statement errors (a bug, not the storage) unclassified', () => {
    for (const code of ['23505', '42P01', '22P02']) expect(postgresFailureOf(pgError(code))).toBeUndefined();
    expect(postgresFailureOf(new Error('anything else'))).toBeUndefined();
    expect(postgresFailureOf(undefined)).toBeUndefined();
  });
});

describe('guarded', () => {
  it('turns a storage failure into a StorageError with the driver error as cause', async () => {
    const cause = pgError('53100');
    const err = await guarded(() => Promise.reject(new DrizzleQueryError('insert …', ['v'], cause))).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(StorageError);
    expect(err.failure).toBe('disk_full');
    expect(err.cause).toBe(cause);
  });

  it("rethrows a statement error as the driver's own, never drizzle's message with the parameters", async () => {
    const cause = pgError('23505', 'duplicate key value violates unique constraint "grants_label_unique"');
    const err = await guarded(() =>
      Promise.reject(new DrizzleQueryError('insert into grants …', ['sealed-value'], cause)),
    ).catch((e) => e);
    expect(err).toBe(cause);
    expect(String(err.message)).not.toContain('sealed-value');
  });
});
