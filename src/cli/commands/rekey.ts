import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../log/logger.js';
import { openStoreContext } from '../../service/store-context.js';
import { examples, printJson, printLine } from '../output.js';

export function registerRekeyCommand(program: Command): void {
  program
    .command('rekey')
    .description(
      'reseal every stored secret under GRANTKEEPER_KEY (or the key file), opening old values with GRANTKEEPER_PREVIOUS_KEYS',
    )
    .option('--json', 'print the counts as JSON')
    .addHelpText(
      'after',
      examples(
        'GRANTKEEPER_KEY="$NEW" GRANTKEEPER_PREVIOUS_KEYS="$OLD" grantkeeper rekey --json',
        '# then drop GRANTKEEPER_PREVIOUS_KEYS: only the new key is needed from now on',
      ),
    )
    .action(async (opts: { json?: boolean }) => {
      const loaded = loadConfig(process.env, program.opts<{ config?: string }>().config);
      // Opening the store verifies the key check value, so a keyring that cannot open it stops here.
      const app = await openStoreContext(
        loaded,
        createLogger({ level: 'warn', destination: process.stderr }),
        {
          create: false,
        },
      );
      try {
        const report = await app.admin.rekey();
        if (opts.json) return printJson(report);
        const r = report.resealed;
        const count = r.accessTokens + r.refreshTokens + r.clientSecrets + r.clientKeys + r.keyCheck;
        printLine(
          `resealed ${count} of ${report.total} values under key ${report.keyId} ` +
            `(${r.accessTokens} access tokens, ${r.refreshTokens} refresh tokens, ${r.clientSecrets} client secrets, ` +
            `${r.clientKeys} client private keys, ${r.keyCheck} key check); ${report.alreadyCurrent} already used it`,
        );
        printLine(
          'every value now opens with GRANTKEEPER_KEY alone: GRANTKEEPER_PREVIOUS_KEYS can be removed',
        );
      } finally {
        await app.close();
      }
    });
}
