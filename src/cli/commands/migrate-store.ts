import type { Command } from 'commander';
import { databaseUrlSchema } from '../../config/config-schema.js';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../log/logger.js';
import { openStoreContext } from '../../service/store-context.js';
import { migrateStore } from '../../store/migrate-store.js';
import { examples, printJson, printLine } from '../output.js';
import { UserError } from '../user-error.js';

export function registerMigrateStoreCommand(program: Command): void {
  program
    .command('migrate-store')
    .description(
      'copy the SQLite store of the data folder into an empty PostgreSQL database (stop grantkeeper run first)',
    )
    .option(
      '--to <url>',
      'the PostgreSQL URL (default GRANTKEEPER_DATABASE_URL; prefer it, a URL here shows in ps)',
    )
    .option('--json', 'print the counts as JSON')
    .addHelpText(
      'after',
      examples(
        'systemctl stop grantkeeper',
        'GRANTKEEPER_DATABASE_URL=postgres://gk:…@db.internal/grantkeeper grantkeeper migrate-store',
        '# then start every replica with GRANTKEEPER_DATABASE_URL and the same GRANTKEEPER_KEY',
      ),
    )
    .action(async (opts: { to?: string; json?: boolean }) => {
      const loaded = loadConfig(process.env, program.opts<{ config?: string }>().config);
      const targetUrl = opts.to ?? loaded.config.databaseUrl;
      if (!targetUrl) {
        throw new UserError(
          'migrate-store needs the PostgreSQL URL: set GRANTKEEPER_DATABASE_URL or pass --to',
          2,
        );
      }
      const parsedTarget = databaseUrlSchema.safeParse(targetUrl);
      if (!parsedTarget.success) {
        throw new UserError('--to: expected a postgres://user:password@host:port/database URL', 2);
      }
      const logger = createLogger({ level: 'warn', destination: process.stderr });
      // The source is always the data folder's SQLite store, opened (and its key checked) as usual.
      const { databaseUrl: _target, ...sqliteConfig } = loaded.config;
      const source = await openStoreContext({ ...loaded, config: sqliteConfig }, logger, { create: false });
      const { dataDir, sealer } = source;
      await source.close();
      const report = await migrateStore({ dataDir, sealer, targetUrl, logger });
      if (opts.json) return printJson(report);
      const c = report.copied;
      printLine(
        `copied ${c.grants} grants, ${c.clients} clients, ${c.refreshEvents} events, ${c.apiKeys} API keys and ` +
          `${c.apiSessions} sessions to ${report.target}; every sealed value opens there with key ${report.keyId}`,
      );
      printLine(
        `this data folder's store is now marked as moved. Start every replica with GRANTKEEPER_DATABASE_URL and key ${report.keyId} ` +
          '(GRANTKEEPER_KEY, GRANTKEEPER_KEY_FILE or GRANTKEEPER_KEY_COMMAND)',
      );
    });
}
