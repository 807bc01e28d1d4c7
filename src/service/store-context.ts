import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LoadedConfig } from '../config/load-config.js';
import { loadKeyring } from '../crypto/key-source.js';
import { Sealer } from '../crypto/sealer.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { Store } from '../grants/ports.js';
import type { Logger } from '../log/logger.js';
import { openPostgresStore } from '../store/postgres/postgres-store.js';
import { DB_FILE_NAME, ensureDataDir, type SqliteDatabase } from '../store/sqlite/sqlite-database.js';
import { openSqliteStore } from '../store/sqlite/sqlite-store.js';

/**
 * What every command needs: the store's repositories, the key that unseals what they hold, and the
 * data folder. `database` is the SQLite file itself, for the tests and the benchmark's seeding only:
 * nothing in the service reaches past the ports.
 */
export interface StoreContext extends Store {
  dataDir: string;
  sealer: Sealer;
  database?: SqliteDatabase;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** How long a write waits for another writer's lock (SQLite busy timeout, PostgreSQL lock_timeout). */
  lockWaitMs?: number;
  /**
   * Commands that register or run create the data folder, key file and db; read-only tools
   * (`token`, `grants`, `status`, the library) refuse to, so a mistyped folder is an error, not a
   * new empty store.
   */
  create?: boolean;
}

export async function openStoreContext(
  loaded: LoadedConfig,
  logger: Logger,
  options: OpenOptions = {},
): Promise<StoreContext> {
  const create = options.create ?? true;
  const { config, secrets } = loaded;
  const shared = config.databaseUrl !== undefined;
  // With PostgreSQL the data folder holds no store; it still holds a managed Redis, and is created.
  const dataDir = create || shared ? ensureDataDir(config.dataDir) : existingStoreDir(config.dataDir);
  const keyring = await loadKeyring({
    dataDir,
    logger,
    generate: create,
    shared,
    ...(secrets.key ? { envKey: secrets.key } : {}),
    ...(secrets.keyFile ? { keyFile: secrets.keyFile } : {}),
    ...(secrets.keyCommand ? { keyCommand: secrets.keyCommand } : {}),
    ...(secrets.previousKeys ? { previousKeys: secrets.previousKeys } : {}),
  });
  const sealer = new Sealer(keyring);
  const store = config.databaseUrl
    ? await openPostgresStore({
        url: config.databaseUrl,
        sealer,
        create,
        poolSize: config.databasePoolSize,
        logger,
        ...(options.lockWaitMs === undefined ? {} : { lockTimeoutMs: options.lockWaitMs }),
      })
    : openSqliteStore({
        dataDir,
        sealer,
        ...(options.lockWaitMs === undefined ? {} : { busyTimeoutMs: options.lockWaitMs }),
      });
  try {
    await store.admin.verifySealingKey();
  } catch (err) {
    await store.admin.close();
    throw err;
  }
  return { ...store, dataDir, sealer, close: () => store.admin.close() };
}

function existingStoreDir(dataDir: string): string {
  const dir = resolve(dataDir);
  if (!existsSync(join(dir, DB_FILE_NAME))) {
    throw new GrantkeeperError(
      'store_unusable',
      `no grantkeeper store at ${dir}; set GRANTKEEPER_DATA_DIR to the service's data folder (grantkeeper client add or run creates one)`,
    );
  }
  return dir;
}
