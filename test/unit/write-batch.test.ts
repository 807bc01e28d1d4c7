import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WriteBatch } from '../../src/store/sqlite/write-batch.js';

describe('WriteBatch: writes asked for together share one transaction', () => {
  let db: Database.Database;
  let savepoints: number;
  let batch: WriteBatch;

  beforeEach(() => {
    db = new Database(':memory:');
    db.exec('create table t (id integer primary key, n integer not null check (n >= 0))');
    db.exec('insert into t values (1, 1), (2, 0), (3, 5)');
    const tx = db.transaction((fn: () => unknown) => fn());
    savepoints = 0;
    batch = new WriteBatch({
      transaction: <T>(fn: () => T) => tx(fn) as T,
      savepoint: <T>(fn: () => T) => {
        savepoints += 1;
        return tx(fn) as T;
      },
      inTransaction: () => db.inTransaction,
    });
  });
  afterEach(() => db.close());

  const rows = () => db.prepare('select id, n from t order by id').all();
  const add = (id: number, by: number) => () =>
    db.prepare('update t set n = n + ? where id = ?').run(by, id).changes;

  it('commits writes that all succeed in one transaction, without a savepoint each', async () => {
    const results = await Promise.all([batch.run(add(1, 1)), batch.run(add(2, 1)), batch.run(add(3, 1))]);
    expect(results).toEqual([1, 1, 1]);
    expect(savepoints).toBe(0);
    expect(rows()).toEqual([
      { id: 1, n: 2 },
      { id: 2, n: 1 },
      { id: 3, n: 6 },
    ]);
  });

  it('undoes a failed write alone, even one of many statements, and commits the others', async () => {
    const results = await Promise.allSettled([
      batch.run(add(3, 1)),
      // Its first statement passes, its second breaks the check: both are undone.
      batch.run(() => {
        add(1, 10)();
        return add(2, -1)();
      }),
      batch.run(add(2, 2)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(rows()).toEqual([
      { id: 1, n: 1 },
      { id: 2, n: 2 },
      { id: 3, n: 6 },
    ]);
  });
});
