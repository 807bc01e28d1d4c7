import { type Command, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { rateLimitView } from '../../api/views/client-view.js';
import { DEFAULT_REDIRECT_URI } from '../../consent/authorization-request.js';
import type { PrivateKeyInput, SigningKeyInfo } from '../../crypto/signing-key.js';
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
import { UserError } from '../user-error.js';

const envVarArg = parseWith(
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'),
);
const clientIdArg = parseWith(z.string().regex(/^[\x21-\x7e]{1,512}$/, 'expected a printable client id'));
const urlArg = parseWith(z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }));

/**
 * `--secret-expires 2027-06-30` (the date the provider shows; the secret is taken to end as that day
 * begins, UTC, so a warning is never late) or a full ISO 8601 time. Epoch ms.
 */
const secretExpiresArg = parseWith(
  z
    .union([z.iso.date(), z.iso.datetime({ offset: true })], {
      error: 'expected a date such as 2027-06-30 or an ISO 8601 time',
    })
    .transform((v) => Date.parse(v.length === 10 ? `${v}T00:00:00Z` : v)),
);

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
  secretExpires?: number;
  spa?: boolean;
  testing?: boolean;
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
      '--secret-expires <date>',
      'when the client secret ends (Microsoft sets it at creation): warned 30 days ahead',
      secretExpiresArg,
    )
    .option(
      '--spa',
      'microsoft: a single-page-application registration (refresh tokens end 24 h after consent)',
    )
    .option('--testing', 'google: the app is in Testing status (refresh tokens end 7 days after consent)')
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
      if (opts.secretExpires !== undefined && secret === undefined) {
        throw new UserError(
          '--secret-expires needs a client secret (--client-secret-env or --client-secret-stdin)',
          2,
        );
      }
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
            ...(opts.secretExpires === undefined ? {} : { secretExpiresAt: opts.secretExpires }),
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

  registerSecretCommands(client, program);

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
                view.has_secret
                  ? describeSecrets(client)
                  : view.signing_key
                    ? 'none'
                    : 'none (public client)',
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

/**
 * A secret's lifecycle: rotate adds the new one and keeps the old as a fallback (the token client
 * tries the newest first and falls back on invalid_client); retire drops the old one.
 */
function registerSecretCommands(client: Command, program: Command): void {
  const secret = client
    .command('secret')
    .description("rotate a client's secret with the old one kept as a fallback, then retire the old one");
  secret
    .command('rotate')
    .description('make a new secret current and keep the old one as a fallback until retired')
    .argument('<name>', 'client name', clientNameArg)
    .option('--client-secret-env <VAR>', 'read the new secret from this environment variable', envVarArg)
    .option('--client-secret-stdin', 'read the new secret from standard input (piped)')
    .option('--secret-expires <date>', 'when the new secret ends: warned 30 days ahead', secretExpiresArg)
    .option('--json', 'print the client as JSON')
    .addHelpText(
      'after',
      examples(
        'MS_SECRET_2027=… grantkeeper client secret rotate contoso --client-secret-env MS_SECRET_2027 --secret-expires 2027-06-30',
      ),
    )
    .action(
      async (
        name: string,
        opts: {
          clientSecretEnv?: string;
          clientSecretStdin?: boolean;
          secretExpires?: number;
          json?: boolean;
        },
      ) => {
        const next = await readSecret(opts);
        if (next === undefined)
          throw new UserError('give the new secret: --client-secret-env VAR or --client-secret-stdin', 2);
        await withCliContext(
          program,
          async ({ app }) => {
            const found = await findClient(app.clients, name);
            if (!found.hasSecret) {
              throw new UserError(
                `client ${name} has no secret to rotate (${found.authMethod}): use client add to set one`,
              );
            }
            if (found.secret.previous) {
              throw new UserError(
                `client ${name} still keeps a previous secret as fallback: retire it first (grantkeeper client secret retire ${name})`,
              );
            }
            const rotated = await app.clients.rotateSecret(found.id, {
              secret: next,
              expiresAt: opts.secretExpires ?? null,
              now: Date.now(),
            });
            if (!rotated) throw new UserError(`client ${name} changed meanwhile: run it again`);
            const view = await clientView(rotated, app.grants);
            if (opts.json) return printJson(view);
            printLine(`client ${name}: new secret is current, the old one is kept as a fallback`);
            printLine(
              `once refreshes succeed with it (client show ${name}), retire the old: grantkeeper client secret retire ${name}`,
            );
          },
          { redis: false },
        );
      },
    );
  secret
    .command('retire')
    .description('drop the previous secret a rotation kept as fallback')
    .argument('<name>', 'client name', clientNameArg)
    .option(
      '--force',
      'retire it even though the provider last accepted the previous secret, not the new one',
    )
    .option('--json', 'print the client as JSON')
    .addHelpText('after', examples('grantkeeper client secret retire contoso'))
    .action(async (name: string, opts: { force?: boolean; json?: boolean }) => {
      await withCliContext(
        program,
        async ({ app }) => {
          const found = await findClient(app.clients, name);
          if (!found.secret.previous) throw new UserError(`client ${name} keeps no previous secret`);
          if (found.secret.inUse === 'previous' && !opts.force) {
            throw new UserError(
              `the provider last accepted the previous secret of ${name}, not the new one: retiring it would stop every grant ` +
                '(check the new secret, or pass --force)',
            );
          }
          const retired = await app.clients.retireSecret(found.id, Date.now());
          if (!retired) throw new UserError(`client ${name} changed meanwhile: run it again`);
          if (opts.json) return printJson(await clientView(retired, app.grants));
          printLine(`client ${name}: previous secret retired`);
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
    secret_expires_at: isoOrNull(client.secret.expiresAt),
    /** The secret a rotation replaced, still tried when the current one is refused; null: none. */
    previous_secret: client.secret.previous
      ? { expires_at: isoOrNull(client.secret.previous.expiresAt) }
      : null,
    /** Which secret the token endpoint last accepted (current or previous); null: not known yet. */
    secret_in_use: client.secret.inUse,
    secret_in_use_at: isoOrNull(client.secret.inUseAt),
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

const isoOrNull = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** `set (sealed), ends 2027-06-30; previous kept as fallback …; last worked: previous`. */
function describeSecrets(client: Client): string {
  const { expiresAt, previous, inUse } = client.secret;
  const ends = (at: number | null) =>
    at === null ? 'no end date' : `ends ${new Date(at).toISOString().slice(0, 10)}`;
  const parts = [`set (sealed), ${ends(expiresAt)}`];
  if (previous) parts.push(`previous kept as fallback (${ends(previous.expiresAt)})`);
  if (inUse) parts.push(`last accepted: the ${inUse} one`);
  return parts.join('; ');
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
  if (opts.spa && opts.provider !== 'microsoft')
    throw new UserError('--spa is only for --provider microsoft', 2);
  if (opts.testing && opts.provider !== 'google')
    throw new UserError('--testing is only for --provider google', 2);
  if (opts.provider === 'microsoft')
    return {
      kind: 'microsoft',
      ...(opts.tenant ? { tenant: opts.tenant } : {}),
      ...(opts.spa ? { spa: true } : {}),
    };
  if (opts.provider === 'google') return { kind: 'google', ...(opts.testing ? { testing: true } : {}) };
  if (opts.provider === 'oidc') {
    if (!opts.issuer) throw new UserError('--provider oidc needs --issuer URL', 2);
    return { kind: 'oidc', issuer: opts.issuer };
  }
  return { kind: opts.provider as 'x' };
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
async function readSecret(
  opts: Pick<AddOptions, 'clientSecretEnv' | 'clientSecretStdin'>,
): Promise<string | undefined> {
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
