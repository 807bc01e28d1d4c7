import type { Command } from 'commander';
import { z } from 'zod';
import { addServiceGrant } from '../../grants/actions/add-service-grant.js';
import type { ServiceGrantKind, TokenRequestParams } from '../../grants/grant.js';
import type { Client } from '../../grants/ports.js';
import { consentDeps } from '../../service/refresh-engine.js';
import { withCliContext } from '../cli-context.js';
import { storedGrantView } from '../grant-lookup.js';
import { colors, examples, formatRelative, printJson, printLine } from '../output.js';
import { clientNameArg, labelArg, parseWith, scopesArg } from '../parsers.js';
import { UserError } from '../user-error.js';
import { findClient } from './client.js';

interface GrantAddFlags {
  clientCredentials?: boolean;
  jwtBearer?: boolean;
  label: string;
  scopes?: string[];
  resource?: string[];
  audience?: string;
  subject?: string;
  json?: boolean;
}

const resourceArg = parseWith(z.url({ error: 'expected an absolute URI (RFC 8707)' }));
const audienceArg = parseWith(z.string().regex(/^[\x21-\x7e]{1,512}$/, 'expected printable text'));
// An email (Google domain-wide delegation) or any account id the server knows.
const subjectArg = parseWith(z.string().regex(/^[\x21-\x7e]{1,320}$/, 'expected an account id or email'));

/** Repeatable `--resource`, collected in order. */
function collectResource(value: string, previous: string[] = []): string[] {
  return [...previous, resourceArg(value)];
}

export function registerGrantAddCommand(grant: Command, program: Command): void {
  grant
    .command('add')
    .description(
      "add a grant that needs no user: the client's own tokens, fetched again ahead of each expiry",
    )
    .argument('<client>', 'the client (grantkeeper client list)', clientNameArg)
    .option(
      '--client-credentials',
      'the client-credentials grant (RFC 6749 §4.4): X app-only, Microsoft application permissions',
    )
    .option(
      '--jwt-bearer',
      'the JWT-bearer grant (RFC 7523): a Google service account, or any server taking signed assertions',
    )
    .requiredOption(
      '--label <name>',
      "the grant's label; running it again with the same label replaces that grant's request",
      labelArg,
    )
    .option(
      '--scopes <scopes>',
      "space-separated scopes (default: the preset's, e.g. Microsoft's https://graph.microsoft.com/.default)",
      scopesArg,
    )
    .option(
      '--resource <uri>',
      'client credentials: an RFC 8707 resource indicator (repeatable)',
      collectResource,
    )
    .option(
      '--audience <aud>',
      'client credentials: the audience parameter some servers take (Auth0, Okta)',
      audienceArg,
    )
    .option(
      '--subject <account>',
      'JWT bearer: the account to act for (Google domain-wide delegation: a user email)',
      subjectArg,
    )
    .option('--json', 'print the stored grant as JSON')
    .addHelpText(
      'after',
      examples(
        'grantkeeper grant add x-app --client-credentials --label x-app-only',
        'grantkeeper grant add graph --client-credentials --label graph-app',
        'grantkeeper grant add google-sa --jwt-bearer --subject admin@example.com --scopes https://www.googleapis.com/auth/admin.directory.user.readonly --label gsuite',
      ),
    )
    .action(async (clientName: string, flags: GrantAddFlags) => {
      const kind = grantKind(flags);
      await withCliContext(
        program,
        async ({ app, engine }) => {
          const client = await findClient(app.clients, clientName);
          const request = tokenRequest(kind, flags, client);
          const result = await addServiceGrant(
            {
              ...consentDeps(engine),
            },
            { clientRef: client.id, kind, label: flags.label, request },
          );
          const { grant: saved } = result;
          if (flags.json) {
            return printJson(storedGrantView(saved, clientName, result));
          }
          const now = Date.now();
          printLine(
            `${colors.green('✓')} ${result.replaced ? 'replaced' : 'stored'} ${kind} grant ${colors.bold(saved.label)} (${saved.id})`,
          );
          printLine(
            `  next token ${formatRelative(saved.nextRefreshAt, now)}: ${
              result.scheduled ? 'queued' : 'the service queues it when it runs (grantkeeper run)'
            }`,
          );
        },
        { create: false },
      );
    });
}

function grantKind(flags: GrantAddFlags): ServiceGrantKind {
  if (flags.clientCredentials === flags.jwtBearer) {
    throw new UserError('say which grant: --client-credentials or --jwt-bearer (one of them)', 2);
  }
  if (flags.clientCredentials && flags.subject !== undefined) {
    throw new UserError('--subject goes with --jwt-bearer', 2);
  }
  if (flags.jwtBearer && (flags.resource !== undefined || flags.audience !== undefined)) {
    throw new UserError('--resource and --audience go with --client-credentials', 2);
  }
  return flags.clientCredentials ? 'client_credentials' : 'jwt_bearer';
}

/** What each token request of the grant asks for: the flags, else the preset's service scopes. */
function tokenRequest(kind: ServiceGrantKind, flags: GrantAddFlags, client: Client): TokenRequestParams {
  const scopes = flags.scopes ?? client.profile.serviceDefaultScopes;
  if (kind === 'jwt_bearer' && client.profile.scopeInAssertion && !scopes?.length) {
    throw new UserError(
      `client ${client.name} needs --scopes for a JWT-bearer grant (Google names no default)`,
      2,
    );
  }
  return {
    ...(scopes?.length ? { scope: scopes.join(' ') } : {}),
    ...(flags.resource ? { resource: flags.resource } : {}),
    ...(flags.audience ? { audience: flags.audience } : {}),
    ...(flags.subject ? { subject: flags.subject } : {}),
  };
}
