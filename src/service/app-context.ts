import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DB_FILE_NAME, ensureDataDir, openStore, type Store } from '../../db/connection.js';
import type { LoadedConfig } from '../config/load-config.js';
import { loadKeyring } from '../crypto/key-source.js';
import { Sealer } from '../crypto/sealer.js';
import { UserError } from '../errors/user-error.js';
import type { Logger } from '../log/logger.js';
import { ClientStore } from '../store/client-store.js';
import { GrantStore } from '../store/grant-store.js';
import { verifySealingKey } from '../store/key-check.js';
import { ServiceStateStore } from '../store/service-state-store.js';

/** What every command needs: the opened store and the key that unseals it. */
export interface AppContext {
  dataDir: string;
  store: Store;
  sealer: Sealer;
  grants: GrantStore;
  clients: ClientStore;
  serviceState: ServiceStateStore;
  close(): void;
}

export interface OpenOptions {
  busyTimeoutMs?: number;
  /**
   * Commands that register or run create the data folder, key file and db; read-only tools
   * (`token`, `grants`, `status`, the library) refuse to, so a mistyped folder is an error, not a
   * new empty store.
   */
  create?: boolean;
}

export async function openAppContext(
  loaded: LoadedConfig,
  logger: Logger,
  options: OpenOptions = {},
): Promise<AppContext> {
  const create = options.create ?? true;
  const dataDir = create ? ensureDataDir(loaded.config.dataDir) : existingStoreDir(loaded.config.dataDir);
  const keyring = await loadKeyring({
    dataDir,
    logger,
    generate: create,
    ...(loaded.secrets.key ? { envKey: loaded.secrets.key } : {}),
    ...(loaded.secrets.previousKeys ? { previousKeys: loaded.secrets.previousKeys } : {}),
  });
  const sealer = new Sealer(keyring);
  const store = openStore({
    dataDir,
    ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
  });
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
    serviceState: new ServiceStateStore(store.db),
    close: () => store.close(),
  };
}

function existingStoreDir(dataDir: string): string {
  const dir = resolve(dataDir);
  if (!existsSync(join(dir, DB_FILE_NAME))) {
    throw new UserError(
      `no grantkeeper store at ${dir}; set GRANTKEEPER_DATA_DIR to the service's data folder (grantkeeper client add or run creates one)`,
    );
  }
  return dir;
}
