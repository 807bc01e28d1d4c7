import type { Command } from 'commander';
import type { GrantRow } from '../../../db/schema.js';
import { UserError } from '../../errors/user-error.js';
import { defaultMinValidSec } from '../../refresh/access-token-reader.js';
import { withCliContext } from '../cli-context.js';
import { findGrant } from '../grant-view.js';
import { colors, examples, formatSpan, isoOrNull, printJson, printLine } from '../output.js';
import { grantRefArg, secondsArg } from '../parsers.js';

export function registerTokenCommands(program: Command): void {
  program
    .command('token')
    .description(
      'print only the access token (for $(…) in scripts), refreshing first when it would not last --min-valid',
    )
    .argument('<grant>', 'grant id or label', grantRefArg)
    .option(
      '--min-valid <seconds>',
      "the token must stay valid at least this long (default: 60, or half the provider's token lifetime when shorter)",
      secondsArg(0, 86_400),
    )
    .addHelpText(
      'after',
      examples(
        'curl -H "Authorization: Bearer $(grantkeeper token @ourbot)" https://api.x.com/2/users/me',
        'grantkeeper token @ourbot --min-valid 600',
      ),
    )
    .action(async (ref: string, opts: { minValid?: number }) => {
      await withCliContext(program, async ({ app, engine }) => {
        const grant = findGrant(app, ref);
        const minValidSec = opts.minValid ?? defaultMinValidSec(grant.accessLifetimeMs);
        const token = await engine.reader.readGrant(grant, { minValidSec });
        process.stdout.write(`${token.accessToken}\n`);
      });
    });

  program
    .command('refresh')
    .description('refresh a grant now, under the same lease as the worker')
    .argument('<grant>', 'grant id or label', grantRefArg)
    .option('--json', 'print JSON')
    .addHelpText('after', examples('grantkeeper refresh @ourbot'))
    .action(async (ref: string, opts: { json?: boolean }) => {
      await withCliContext(program, async ({ engine }) => {
        const token = await engine.reader.read(ref, { force: true });
        const view = {
          id: token.grantId,
          label: token.label,
          refreshed: token.refreshed,
          accessExpiresAt: isoOrNull(token.expiresAt),
        };
        if (opts.json) return printJson(view);
        printLine(
          `${colors.green('✓')} refreshed ${token.label}; the access token lasts ${formatSpan(token.expiresAt - Date.now())}`,
        );
      });
    });

  program
    .command('retry')
    .description('retry failed grants now: a stopped one (needs_reconsent, client_error) is tried again')
    .argument('[grant]', 'grant id or label', grantRefArg)
    .option('--all-failed', 'every grant that is not active')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples(
        'grantkeeper retry @ourbot   # after fixing the client secret',
        'grantkeeper retry --all-failed',
      ),
    )
    .action(async (ref: string | undefined, opts: { allFailed?: boolean; json?: boolean }) => {
      if ((ref === undefined) === !opts.allFailed) {
        throw new UserError('name one grant or pass --all-failed', 2);
      }
      await withCliContext(program, async ({ app, engine }) => {
        const targets: GrantRow[] = ref
          ? [findGrant(app, ref)]
          : app.grants.list().filter((g) => g.state !== 'active');
        const results: Array<{ id: string; label: string; ok: boolean; error?: string }> = [];
        for (const grant of targets) {
          app.grants.reviveForRetry(grant.id, Date.now());
          try {
            await engine.reader.read(grant.id, { force: true });
            results.push({ id: grant.id, label: grant.label, ok: true });
          } catch (err) {
            if (!(err instanceof UserError)) throw err;
            results.push({ id: grant.id, label: grant.label, ok: false, error: err.message });
          }
        }
        if (opts.json) printJson(results);
        else if (results.length === 0) printLine('no failed grants');
        else {
          for (const r of results) {
            printLine(
              r.ok
                ? `${colors.green('✓')} ${r.label} refreshed`
                : `${colors.red('✗')} ${r.label}: ${r.error}`,
            );
          }
        }
        const failed = results.filter((r) => !r.ok).length;
        if (failed > 0) throw new UserError(`${failed} of ${results.length} grant(s) still fail`);
      });
    });
}
