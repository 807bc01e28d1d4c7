import type { Command } from 'commander';
import {
  consentLinkDeps,
  consentLinkView,
  createConsentLink,
  DEFAULT_LINK_TTL_MS,
  MAX_LINK_TTL_MS,
  MIN_LINK_TTL_MS,
} from '../../consent/consent-links.js';
import { syncConfigClients } from '../../service/sync-config-clients.js';
import { withCliContext } from '../cli-context.js';
import { colors, examples, formatRelative, note, printJson, printLine } from '../output.js';
import { clientNameArg, durationArg, labelArg } from '../parsers.js';

interface LinkFlags {
  label: string;
  expires: number;
  json?: boolean;
}

export function registerLinkCommand(program: Command): void {
  program
    .command('link')
    .description(
      "print a one-time consent link: the account's owner opens it in any browser, consents, and the grant is stored",
    )
    .argument('<client>', 'the client to consent to (grantkeeper client list)', clientNameArg)
    .requiredOption(
      '--label <name>',
      'the grant the link stores, or renews (only for the account it belongs to)',
      labelArg,
    )
    .option(
      '--expires <span>',
      'how long the link stays usable: 30m, 24h, 7d (5 minutes to 30 days)',
      durationArg(MIN_LINK_TTL_MS, MAX_LINK_TTL_MS),
      DEFAULT_LINK_TTL_MS,
    )
    .option('--json', 'print {url, id, client, label, expires_at} as JSON')
    .addHelpText(
      'after',
      examples(
        'grantkeeper link x --label @ourbot                  # send the URL to the account owner',
        'grantkeeper link contoso --label ops@contoso.com --expires 2h',
      ),
    )
    .action(async (clientName: string, flags: LinkFlags) => {
      await withCliContext(
        program,
        async ({ loaded, app }) => {
          if (loaded.config.clients.length > 0) {
            await syncConfigClients(loaded.config.clients, app.clients, process.env, Date.now());
          }
          const offer = await createConsentLink(consentLinkDeps(app, loaded.config.publicUrl), {
            client: clientName,
            label: flags.label,
            ttlMs: flags.expires,
          });
          if (flags.json) {
            return printJson(consentLinkView(offer));
          }
          printLine(offer.url);
          note(
            `${colors.bold(offer.label)} (${offer.client}): usable once, until ${new Date(offer.expiresAt).toISOString()} (${formatRelative(offer.expiresAt, Date.now())}). The provider must accept ${loaded.config.publicUrl}/callback as a redirect URI.`,
          );
        },
        { redis: false },
      );
    });
}
