import { type Command, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { rateLimitView } from '../../api/client-views.js';
import { DEFAULT_REDIRECT_URI } from '../../consent/authorization-request.js';
import type { PrivateKeyInput, SigningKeyInfo } from '../../crypto/signing-key.js';
import { UserError } from '../../errors/user-error.js';
import type { Client, ClientRepository, GrantRepository } from '../../grants/ports.js';
import { type AuthorizeParams, addAuthorizeParam } from '../../oauth/authorize-params.js';
import { parseServiceAccountKey } from '../../oauth/google-service-account.js';
import { type ProviderProfile, type ProviderSpec, resolveProvider } from '../../oauth/providers.js';
import { assertSecureEndpoint, type ClientAuthMethod } from '../../oauth/token-client.js';
import { describeRate, rateLimitOf, rateTextSchema } from '../../pacing/rate-limit.js';
import { withCliContext } from '../cli-context.js';
import { examples, printJson, printLine, renderFields, renderTable } from '../output.js';
import { clientNameArg, parseWith, scopesArg, wholeNumberArg } from '../parsers.js';
import { readOperatorFile, readSigningKeyOptions, type SigningKeyOptions } from '../signing-key-options.js';

const envVarArg = parseWith(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'),
);
const clientIdArg = parseWith(z.string().regex(/^[\x21-\x7e]{1,512}$/, 'expected a printable client id'));
const urlArg = parseWith(z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }));

/** Repeatable `--authorize-param name=value`, collected into one object. */
function authorizeParamArg(value: string, previous?: AuthorizeParams): AuthorizeParams {
  try {
    return addAuthorizeParam(value, previous);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

interface AddOptions extends SigningKeyOptions {
  provider: 'x' | 'microsoft' | 'google' | 'google-service-account' | 'oidc';
  keyFile?: string;
  tenant?: string;
  issuer?: string;
  clientId?: string;
  clientSecretEnv?: string;
  clientSecretStdin?: boolean;
  scopes?: string[];
  redirectUri?: string;
  authorizeParam?: AuthorizeParams;
  rate?: number;
  burst?: number;
  json?: boolean;
}

export function registerClientCommands(program: Command): void {
  const client = program
    .command('client')
    .description('register and inspect OAuth clients (app registrations)')
    .addHelpText(
      'after',
      examples(
        'grantkeeper client add x --provider x --client-id ABC --client-secret-env X_SECRET',
        'grantkeeper client list',
      ),
    );

  client
    .command('add')
    .description('add a client, or update the one with this name (its grants stay attached)')
    .argument('<name>', 'a short name for the client, used by seed', clientNameArg)
    .addOption(
      new Option('--provider <kind>', 'provider preset')
        .choices(['x', 'microsoft', 'google', 'google-service-account', 'oidc'])
        .makeOptionMandatory(),
    )
    .option('--tenant <tenant>', 'microsoft: tenant id or domain (default common)')
    .option('--issuer <url>', 'oidc: issuer URL, discovered via .well-known', urlArg)
    .option(
      '--client-id <id>',
      'the client id from the app registration (required but for google-service-account)',
      clientIdArg,
    )
    .option(
      '--key-file <json>',
      "google-service-account: the service account's JSON key file (its private key is sealed)",
    )
    .option('--client-secret-env <VAR>', 'read the client secret from this environment variable', envVarArg)
    .option('--client-secret-stdin', 'read the client secret from standard input (piped)')
    .option(
      '--private-key-file <pem>',
      'authenticate with private_key_jwt: sign each token request with this PEM private key (sealed in the store)',
    )
    .option('--key-id <kid>', 'private_key_jwt: the key id (kid) the server knows the public key by')
    .option('--alg <alg>', 'private_key_jwt: RS256, PS256 or ES256 (default: from the key type)')
    .option(
      '--x5t-from-cert <pem>',
      "private_key_jwt: name the key by this certificate's x5t#S256 thumbprint (Microsoft certificate credentials)",
    )
    .option(
      '--assertion-audience <aud>',
      "private_key_jwt: the assertion's audience, token-endpoint (default) or issuer",
    )
    .option(
      '--scopes <scopes>',
      "space-separated scopes (default: the preset's; the offline scope is always added)",
      scopesArg,
    )
    .option(
      '--redirect-uri <uri>',
      `redirect URI registered with the provider (default ${DEFAULT_REDIRECT_URI}; no port = any loopback port)`,
    )
    .option(
      '--authorize-param <name=value>',
      "an extra authorization-request parameter, over the preset's (repeatable: login_hint, domain_hint, hd, audience …)",
      authorizeParamArg,
    )
    .option(
      '--rate <n/s>',
      'at most this many token requests, across every replica: 50/s, 3000/min or 10000/h (a request found over it waits its turn)',
      parseWith(rateTextSchema),
    )
    .option(
      '--burst <n>',
      'with --rate: this many may go at once after a quiet spell (default 1)',
      wholeNumberArg(1, 10_000),
    )
    .option('--json', 'print the client as JSON')
    .addHelpText(
      'after',
      examples(
        'X_SECRET=… grantkeeper client add x --provider x --client-id ABC --client-secret-env X_SECRET',
        'grantkeeper client add contoso --provider microsoft --tenant contoso.onmicrosoft.com --client-id GUID --client-secret-env MS_SECRET',
        'pass show google/secret | grantkeeper client add google --provider google --client-id ID.apps.googleusercontent.com --client-secret-stdin',
        'grantkeeper client add contoso --provider microsoft --tenant organizations --client-id GUID --authorize-param domain_hint=contoso.com',
        'grantkeeper client add graph --provider microsoft --tenant GUID --client-id GUID --private-key-file app.key --x5t-from-cert app.crt',
        'grantkeeper client add google-sa --provider google-service-account --key-file sa.json',
      ),
    )
    .action(async (name: string, opts: AddOptions) => {
      const redirectUri = opts.redirectUri === undefined ? undefined : checkRedirectUri(opts.redirectUri);
      const secret = await readSecret(opts);
      if (secret !== undefined && opts.privateKeyFile !== undefined) {
        throw new UserError('use either a client secret or --private-key-file, not both', 2);
      }
      if (opts.burst !== undefined && opts.rate === undefined) throw new UserError('--burst needs --rate', 2);
      const registration = await clientRegistration(opts);
      const { privateKey, clientId } = registration;
      const rateLimit = rateLimitOf(opts.rate, opts.burst);
      // Like the other settings, a client added again without --rate has none.
      const profile = { ...registration.profile, ...(rateLimit ? { rateLimit } : {}) };
      await withCliContext(
        program,
        async ({ app }) => {
          const saved = await app.clients.upsert({
            name,
            profile,
            clientId,
            ...(secret === undefined ? {} : { clientSecret: secret }),
            ...(privateKey ? { privateKey } : {}),
            authMethod:
              registration.authMethod ?? (secret === undefined ? 'none' : profile.confidentialAuthMethod),
            scopes: opts.scopes ?? profile.defaultScopes,
            ...(redirectUri ? { redirectUri } : {}),
            ...(opts.authorizeParam ? { authorizeParams: opts.authorizeParam } : {}),
            now: Date.now(),
          });
          const view = await clientView(saved, app.grants);
          if (opts.json) return printJson(view);
          printLine(
            `client ${name} saved (${view.provider}, ${view.public ? 'public' : 'confidential'} client)`,
          );
          if (opts.provider === 'google-service-account') {
            return printLine(`next: grantkeeper grant add ${name} --jwt-bearer --scopes … --label …`);
          }
          printLine(`register this redirect URI with the provider: ${view.redirect_uri}`);
          printLine(`next: grantkeeper seed ${name}, or grantkeeper grant add ${name} --client-credentials`);
        },
        { redis: false, create: true },
      );
    });

  client
    .command('list')
    .description('list the registered clients')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('grantkeeper client list --json'))
    .action(async (opts: { json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const views = await Promise.all((await app.clients.list()).map((c) => clientView(c, app.grants)));
          if (opts.json) return printJson(views);
          if (views.length === 0) return printLine('no clients yet: grantkeeper client add --help');
          printLine(
            renderTable(
              ['NAME', 'PROVIDER', 'CLIENT ID', 'TYPE', 'GRANTS', 'REDIRECT URI'],
              views.map((v) => [
                v.name,
                v.provider,
                v.client_id,
                v.public ? 'public' : 'confidential',
                String(v.grants),
                v.redirect_uri,
              ]),
            ),
          );
        },
        { redis: false },
      );
    });

  client
    .command('show')
    .description('show one client (never its secret)')
    .argument('<name>', 'client name', clientNameArg)
    .option('--json', 'print JSON')
    .addHelpText('after', examples('grantkeeper client show x'))
    .action(async (name: string, opts: { json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const client = await findClient(app.clients, name);
          const view = await clientView(client, app.grants);
          if (opts.json) return printJson(view);
          printLine(
            renderFields([
              ['name', view.name],
              ['id', view.id],
              ['provider', view.provider],
              ['client id', view.client_id],
              ['authentication', view.auth_method],
              [
                'secret',
                view.has_secret ? 'set (sealed)' : view.signing_key ? 'none' : 'none (public client)',
              ],
              ['private key', client.signingKey ? formatSigningKey(client.signingKey) : '-'],
              ['scopes', view.scopes.join(' ')],
              ['rate limit', client.profile.rateLimit ? describeRate(client.profile.rateLimit) : 'none'],
              ['redirect URI', view.redirect_uri],
              ['authorize params', formatAuthorizeParams(view.authorize_params)],
              ['authorize', view.authorization_endpoint],
              ['token', view.token_endpoint],
              ['revocation', view.revocation_endpoint ?? '-'],
              ['grants', String(view.grants)],
            ]),
          );
        },
        { redis: false },
      );
    });

  client
    .command('remove')
    .description('remove a client; refused while grants use it unless --force (which removes them too)')
    .argument('<name>', 'client name', clientNameArg)
    .option('--force', 'also remove the grants that use it (without revoking them)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      examples('grantkeeper client remove old-app', 'grantkeeper client remove old-app --force'),
    )
    .action(async (name: string, opts: { force?: boolean; json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const found = await findClient(app.clients, name);
          const grants = await app.grants.listByClient(found.id);
          if (grants.length > 0 && !opts.force) {
            const labels = grants.map((g) => g.label).slice(0, 5);
            throw new UserError(
              `client ${name} is used by ${grants.length} grant(s) (${labels.join(', ')}): ` +
                'revoke or remove them first, or pass --force to remove them with it',
            );
          }
          const removed = await app.clients.remove(found.id, { withGrants: opts.force === true });
          if (!removed) {
            throw new UserError(
              `client ${name} changed meanwhile (a grant was added, or it was removed): run it again`,
            );
          }
          const labels = removed.grantLabels;
          if (opts.json) return printJson({ removed: name, grants_removed: labels });
          printLine(`client ${name} removed${labels.length ? ` with ${labels.length} grant(s)` : ''}`);
        },
        { redis: false },
      );
    });
}

export async function findClient(clients: ClientRepository, name: string): Promise<Client> {
  const client = await clients.findByName(name);
  if (!client) throw new UserError(`no client is named "${name}" (grantkeeper client list)`);
  return client;
}

/** A client as `--json` prints it, in the API's snake_case: never its secret. */
async function clientView(client: Client, grants: GrantRepository) {
  const { profile } = client;
  return {
    id: client.id,
    name: client.name,
    provider: profile.kind,
    client_id: client.clientId,
    auth_method: client.authMethod,
    public: client.authMethod === 'none' && !client.signingKey,
    has_secret: client.hasSecret,
    /** Algorithm, key id, certificate thumbprint and audience of its sealed private key; null without one. */
    signing_key: client.signingKey
      ? {
          alg: client.signingKey.alg,
          key_id: client.signingKey.keyId ?? null,
          x5t_s256: client.signingKey.x5tS256 ?? null,
          audience: client.signingKey.audience,
        }
      : null,
    scopes: client.scopes,
    rate_limit: rateLimitView(profile.rateLimit),
    redirect_uri: client.redirectUri ?? DEFAULT_REDIRECT_URI,
    /** The client's own; the preset's are sent too, under them. */
    authorize_params: client.authorizeParams,
    authorization_endpoint: profile.authorizationEndpoint,
    token_endpoint: profile.tokenEndpoint,
    revocation_endpoint: profile.revocationEndpoint ?? null,
    grants: (await grants.listByClient(client.id)).length,
  };
}

function formatSigningKey(key: SigningKeyInfo): string {
  const parts = [
    `set (sealed), ${key.alg}`,
    key.keyId && `kid ${key.keyId}`,
    key.x5tS256 && `x5t#S256 ${key.x5tS256}`,
  ];
  return `${parts.filter(Boolean).join(', ')}; audience ${key.audience.replace('_', ' ')}`;
}

function formatAuthorizeParams(params: AuthorizeParams): string {
  const pairs = Object.entries(params).map(([name, value]) => `${name}=${value}`);
  return pairs.length > 0 ? pairs.join(' ') : '-';
}

/**
 * Who the client is and how it authenticates, from the flags: a service account's key file, or a
 * provider preset with a client id and, maybe, a private key. Every file is checked before anything
 * is stored.
 */
async function clientRegistration(opts: AddOptions): Promise<{
  profile: ProviderProfile;
  clientId: string;
  privateKey?: PrivateKeyInput;
  authMethod?: ClientAuthMethod;
}> {
  if (opts.provider === 'google-service-account') {
    if (!opts.keyFile) throw new UserError('--provider google-service-account needs --key-file sa.json', 2);
    const stray = (['clientId', 'privateKeyFile', 'clientSecretEnv', 'clientSecretStdin'] as const).find(
      (o) => opts[o] !== undefined,
    );
    if (stray)
      throw new UserError(
        '--provider google-service-account takes its identity and key from --key-file alone',
        2,
      );
    const account = await parseServiceAccountKey(
      readOperatorFile(opts.keyFile, 'the key file'),
      opts.keyFile,
    );
    // The assertion authenticates each request: no client authentication besides it.
    return {
      profile: account.profile,
      clientId: account.clientEmail,
      privateKey: account.privateKey,
      authMethod: 'none',
    };
  }
  if (opts.keyFile !== undefined)
    throw new UserError('--key-file is for --provider google-service-account', 2);
  if (opts.clientId === undefined) throw new UserError(`--provider ${opts.provider} needs --client-id`, 2);
  const profile = await resolveProvider(providerSpec(opts));
  const privateKey = readSigningKeyOptions(opts, profile);
  return {
    profile,
    clientId: opts.clientId,
    ...(privateKey ? { privateKey, authMethod: 'private_key_jwt' as const } : {}),
  };
}

function providerSpec(opts: AddOptions): ProviderSpec {
  if (opts.tenant !== undefined && opts.provider !== 'microsoft') {
    throw new UserError('--tenant is only for --provider microsoft', 2);
  }
  if (opts.issuer !== undefined && opts.provider !== 'oidc') {
    throw new UserError('--issuer is only for --provider oidc', 2);
  }
  if (opts.provider === 'microsoft')
    return { kind: 'microsoft', ...(opts.tenant ? { tenant: opts.tenant } : {}) };
  if (opts.provider === 'oidc') {
    if (!opts.issuer) throw new UserError('--provider oidc needs --issuer URL', 2);
    return { kind: 'oidc', issuer: opts.issuer };
  }
  return { kind: opts.provider as 'x' | 'google' };
}

/** https, or http on loopback (RFC 8252 §7.3); kept as typed, since providers compare it as a string. */
function checkRedirectUri(raw: string): string {
  try {
    assertSecureEndpoint(raw, 'the redirect URI');
  } catch (err) {
    throw new UserError((err as Error).message, 2);
  }
  return raw;
}

/** Never a flag value (shell history, ps): an environment variable or a pipe. */
async function readSecret(opts: AddOptions): Promise<string | undefined> {
  if (opts.clientSecretEnv && opts.clientSecretStdin) {
    throw new UserError('use either --client-secret-env or --client-secret-stdin, not both', 2);
  }
  if (opts.clientSecretEnv) {
    const value = process.env[opts.clientSecretEnv];
    if (!value)
      throw new UserError(`${opts.clientSecretEnv} is not set: export the client secret in it first`);
    return value;
  }
  if (!opts.clientSecretStdin) return undefined;
  if (process.stdin.isTTY) {
    throw new UserError(
      '--client-secret-stdin reads a piped secret (… | grantkeeper client add …); to type it, export it and use --client-secret-env',
      2,
    );
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const secret = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (!secret) throw new UserError('no client secret arrived on standard input');
  return secret;
}
