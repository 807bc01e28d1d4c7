import type { Command } from 'commander';
import { removeGrant } from '../../grants/actions/remove.js';
import { revokeGrant } from '../../grants/actions/revoke.js';
import { withCliContext } from '../cli-context.js';
import { findGrant } from '../grant-lookup.js';
import { colors, examples, note, printJson, printLine } from '../output.js';
import { grantRefArg } from '../parsers.js';

export function registerRevokeCommands(program: Command): void {
  program
    .command('revoke')
    .description('revoke a grant at the provider (RFC 7009, where it has an endpoint), then remove it here')
    .argument('<grant>', 'grant id or label', grantRefArg)
    .option('--json', 'print JSON')
    .addHelpText('after', examples('grantkeeper revoke @oldbot'))
    .action(async (ref: string, opts: { json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app, engine }) => {
          const stored = await findGrant(app, ref);
          const { id, label } = stored.grant;
          const outcome = await revokeGrant(engine.actions, stored);
          if (!outcome.revoked) {
            note(
              `note: ${outcome.provider} has no revocation endpoint; the account holder can withdraw the app's access in their account settings`,
            );
          }
          if (opts.json) return printJson({ id, label, revoked: outcome.revoked, removed: true });
          printLine(
            `${colors.green('✓')} ${outcome.revoked ? `revoked ${label} at ${outcome.provider} and removed it` : `removed ${label}`}`,
          );
        },
        { redis: false },
      );
    });

  program
    .command('remove')
    .description('remove a grant here without telling the provider')
    .argument('<grant>', 'grant id or label', grantRefArg)
    .option('--json', 'print JSON')
    .addHelpText('after', examples('grantkeeper remove @oldbot'))
    .action(async (ref: string, opts: { json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const { grant } = await findGrant(app, ref);
          await removeGrant(app, grant);
          if (opts.json) return printJson({ id: grant.id, label: grant.label, removed: true });
          printLine(`${colors.green('✓')} removed ${grant.label}`);
        },
        { redis: false },
      );
    });
}
