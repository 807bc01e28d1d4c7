import { ensureDataDir, openStore, type Store } from '../../db/connection.js';
import type { LoadedConfig } from '../config/load-config.js';
import { loadKeyring } from '../crypto/key-source.js';
import { Sealer } from '../crypto/sealer.js';
import type { Logger } from '../log/logger.js';
import { ClientStore } from '../store/client-store.js';
import { GrantStore } from '../store/grant-store.js';
import { verifySealingKey } from '../store/key-check.js';

/** What every command needs: the opened store and the key that unseals it. */
export interface AppContext {
  dataDir: string;
  store: Store;
  sealer: Sealer;
  grants: GrantStore;
  clients: ClientStore;
  close(): void;
}

export async function openAppContext(
  loaded: LoadedConfig,
  logger: Logger,
  options: { busyTimeoutMs?: number } = {},
): Promise<AppContext> {
  const dataDir = ensureDataDir(loaded.config.dataDir);
  const keyring = await loadKeyring({
    dataDir,
    logger,
    ...(loaded.secrets.key ? { envKey: loaded.secrets.key } : {}),
    ...(loaded.secrets.previousKeys ? { previousKeys: loaded.secrets.previousKeys } : {}),
  });
  const sealer = new Sealer(keyring);
  const store = openStore({ dataDir, ...options });
  try {
    verifySealingKey(store.db, sealer);
  } catch (err) {
    store.close();
    throw err;
  }
  return {
    dataDir,
    store,
    sealer,
    grants: new GrantStore(store.db, sealer),
    clients: new ClientStore(store.db, sealer),
    close: () => store.close(),
  };
}
