import type { Command } from 'commander';
import { refreshNow } from '../../grants/actions/refresh-now.js';
import { retryGrant } from '../../grants/actions/retry.js';
import type { StoredGrant } from '../../grants/grant.js';
import { defaultMinValidSec } from '../../refresh/access-token-reader.js';
import { type CliContext, withCliContext } from '../cli-context.js';
import { findGrant } from '../grant-lookup.js';
import { colors, examples, formatSpan, isoOrNull, printJson, printLine } from '../output.js';
import { grantRefArg, secondsArg } from '../parsers.js';
import { UserError } from '../user-error.js';

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
        const stored = await findGrant(app, ref);
        const minValidSec = opts.minValid ?? defaultMinValidSec(stored.grant.accessLifetimeMs);
        const token = await engine.reader.readGrant(stored, { minValidSec });
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
      await withCliContext(program, async ({ app, engine }) => {
        const token = await refreshNow(engine.actions, await findGrant(app, ref));
        const view = {
          id: token.grantId,
          label: token.label,
          refreshed: token.refreshed,
          access_expires_at: isoOrNull(token.expiresAt),
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
        const targets = ref ? [await findGrant(app, ref)] : await storedFailedGrants(app);
        const results: Array<{ id: string; label: string; ok: boolean; error?: string }> = [];
        for (const stored of targets) {
          const outcome = await retryGrant(engine.actions, stored);
          const { id, label } = stored.grant;
          if (!outcome) results.push({ id, label, ok: false, error: 'the grant was removed meanwhile' });
          else if (outcome.ok) results.push({ id, label, ok: true });
          else results.push({ id, label, ok: false, error: outcome.error.message });
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

async function storedFailedGrants(app: CliContext['app']): Promise<StoredGrant[]> {
  const failed = (await app.grants.list()).filter((g) => g.state !== 'active');
  const stored = await Promise.all(failed.map((g) => app.grants.get(g.id)));
  return stored.filter((s): s is StoredGrant => s !== undefined);
}
