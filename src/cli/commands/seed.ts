import type { Command } from 'commander';
import open from 'open';
import { onConsentSaved } from '../../../jobs/alert-monitor.js';
import { type ConsentMode, seedGrant } from '../../consent/seed-grant.js';
import { consentDeps } from '../../service/refresh-engine.js';
import { syncConfigClients } from '../../service/sync-config-clients.js';
import { withCliContext } from '../cli-context.js';
import { storedGrantView } from '../grant-lookup.js';
import { colors, examples, formatRelative, note, printJson, printLine } from '../output.js';
import { clientNameArg, labelArg, scopesArg, secondsArg } from '../parsers.js';
import { UserError } from '../user-error.js';

interface SeedFlags {
  label?: string;
  scopes?: string[];
  browser: boolean;
  manual?: boolean;
  device?: boolean;
  timeout: number;
  json?: boolean;
}

export function registerSeedCommand(program: Command): void {
  program
    .command('seed')
    .description('capture consent for one account and store its grant, sealed and scheduled')
    .argument('<client>', 'the client to seed with (grantkeeper client list)', clientNameArg)
    .option(
      '--label <name>',
      "the grant's label (default: the account name, e.g. @handle or an email); an existing one is replaced in place",
      labelArg,
    )
    .option(
      '--scopes <scopes>',
      "space-separated scopes instead of the client's (the offline scope is added)",
      scopesArg,
    )
    .option('--no-browser', 'print the consent URL instead of opening a browser')
    .option('--manual', 'headless: paste the redirect URL (or the code) back instead of a loopback listener')
    .option(
      '--device',
      'headless, no paste: show a code to enter on any device (RFC 8628; Microsoft, Google TV clients, OIDC servers that offer it)',
    )
    .option('--timeout <seconds>', 'how long to wait for the consent', secondsArg(5, 3600), 300)
    .option('--json', 'print the stored grant as JSON')
    .addHelpText(
      'after',
      examples(
        'grantkeeper seed x --label @ourbot',
        'grantkeeper seed google --no-browser          # on a laptop: open the printed URL yourself',
        'grantkeeper seed contoso --manual             # over SSH: paste the redirect URL back',
        'grantkeeper seed contoso --device             # over SSH: enter the printed code on your phone',
      ),
    )
    .action(async (clientName: string, flags: SeedFlags) => {
      await withCliContext(
        program,
        async ({ loaded, logger, app, engine, redis }) => {
          if (loaded.config.clients.length > 0) {
            await syncConfigClients(loaded.config.clients, app.clients, process.env, Date.now());
          }
          if (flags.manual && flags.device) throw new UserError('choose --manual or --device, not both', 2);
          const mode: ConsentMode = flags.device ? 'device' : flags.manual ? 'manual' : 'loopback';
          const result = await seedGrant(
            {
              ...consentDeps(engine),
              io: {
                messages: process.stderr,
                input: process.stdin,
                ...(flags.browser && mode === 'loopback' ? { openBrowser: openInBrowser } : {}),
                ...(process.stderr.isTTY ? { qrCode: true } : {}),
              },
            },
            {
              client: clientName,
              ...(flags.label ? { label: flags.label } : {}),
              ...(flags.scopes ? { scopes: flags.scopes } : {}),
              mode,
              timeoutMs: flags.timeout * 1000,
            },
          );
          // A re-consent that brings a dead grant back is a recovery operators were alerted about.
          await onConsentSaved(
            {
              loaded,
              grants: app.grants,
              serviceState: app.serviceState,
              redis: redis.state === 'connected' ? redis.endpoint : undefined,
              logger,
            },
            result.grant,
          );
          if (result.identityProblem)
            note(`note: ${result.identityProblem}; labelled ${result.grant.label} (use --label to choose)`);
          const { grant } = result;
          if (flags.json) {
            return printJson(storedGrantView(grant, clientName, result));
          }
          const now = Date.now();
          printLine(
            `${colors.green('✓')} ${result.replaced ? 'replaced the tokens of' : 'stored'} grant ${colors.bold(grant.label)} (${grant.id})`,
          );
          printLine(
            `  first refresh ${formatRelative(grant.nextRefreshAt, now)}: ${
              result.scheduled ? 'queued' : 'the service queues it when it runs (grantkeeper run)'
            }`,
          );
        },
        { create: true },
      );
    });
}

/** The system browser via `open`; a headless machine without one falls back to the printed URL. */
async function openInBrowser(url: string): Promise<void> {
  const child = await open(url);
  child.on('error', () => {});
  child.unref();
}
