import { join } from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE_NAME } from '../../src/store/sqlite/sqlite-database.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { removeDir, tempDataDir } from '../support/engine.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('SQLite', async () => {
  const dataDir = tempDataDir();
  const outside = () => new Database(join(dataDir, DB_FILE_NAME));
  return {
    open: async (sealer) => openSqliteStore({ dataDir, sealer, busyTimeoutMs: 300 }),
    dispose: async () => removeDir(dataDir),
    async failEventInserts(grantId) {
      const db = outside();
      const only = grantId ? `when new.grant_id = '${grantId}'` : '';
      db.exec(
        `create trigger contract_fail_events before insert on refresh_events ${only} begin select raise(abort, 'injected'); end`,
      );
      db.close();
      return async () => {
        const undo = outside();
        undo.exec('drop trigger contract_fail_events');
        undo.close();
      };
    },
    async storedCodeVerifiers() {
      const db = outside();
      const rows = db.prepare('select code_verifier from consent_link_authorizations').all() as Array<{
        code_verifier: string;
      }>;
      db.close();
      return rows.map((r) => r.code_verifier);
    },
    async holdWriteLock() {
      const db = outside();
      db.exec('begin immediate');
      return async () => {
        db.exec('rollback');
        db.close();
      };
    },
  };
});
