import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { LIVE_GRANT_STATES } from '../../../db/schema.js';
import { UserError } from '../../errors/user-error.js';
import { withCliContext } from '../cli-context.js';
import { findGrant } from '../grant-view.js';
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
          const grant = findGrant(app, ref);
          const clientRow = app.clients.get(grant.clientRef);
          if (!clientRow) throw new UserError(`grant ${grant.label} has no client; use grantkeeper remove`);
          const client = app.clients.open(clientRow);
          const endpoint = client.profile.revocationEndpoint;
          let revoked = false;
          if (endpoint) {
            // Held so no refresh rotates the token while we revoke it, leaving a live one behind.
            const owner = `revoke.${randomBytes(4).toString('hex')}`;
            const live = LIVE_GRANT_STATES.includes(grant.state);
            if (
              live &&
              !app.grants.claim(grant.id, grant.version, owner, engine.leaseMs, engine.inDoubtGraceMs)
            ) {
              throw new UserError(
                `grant ${grant.label} is being refreshed right now, or an earlier refresh's answer may still be on its way; try again later`,
              );
            }
            try {
              const { refreshToken } = app.grants.openTokens(grant);
              await engine.tokenClient.revoke(client.target, endpoint, refreshToken, 'refresh_token');
              revoked = true;
            } catch (err) {
              if (live) app.grants.releaseLease(grant.id, owner, grant.leaseSentAt);
              throw new UserError(
                `the provider did not revoke ${grant.label} (${(err as Error).message}); it is kept: retry, or drop it with grantkeeper remove`,
              );
            }
          }
          app.grants.remove(grant.id);
          if (!endpoint) {
            note(
              `note: ${client.profile.kind} has no revocation endpoint; the account holder can withdraw the app's access in their account settings`,
            );
          }
          if (opts.json) return printJson({ id: grant.id, label: grant.label, revoked, removed: true });
          printLine(
            `${colors.green('✓')} ${revoked ? `revoked ${grant.label} at ${client.profile.kind} and removed it` : `removed ${grant.label}`}`,
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
          const grant = findGrant(app, ref);
          app.grants.remove(grant.id);
          if (opts.json) return printJson({ id: grant.id, label: grant.label, removed: true });
          printLine(`${colors.green('✓')} removed ${grant.label}`);
        },
        { redis: false },
      );
    });
}
