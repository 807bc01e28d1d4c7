import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { removeDir, tempDataDir } from '../support/engine.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('SQLite', async () => {
  const dataDir = tempDataDir();
  return {
    open: async (sealer) => openSqliteStore({ dataDir, sealer }),
    dispose: async () => removeDir(dataDir),
  };
});
