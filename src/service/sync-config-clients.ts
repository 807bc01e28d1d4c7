import type { ConfigClient } from '../config/config-schema.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { ClientRepository } from '../grants/ports.js';
import { type ProviderSpec, resolveProvider } from '../oauth/providers.js';
import { rateLimitOf } from '../pacing/rate-limit.js';

/** The secret a config-file client names, checked before anything starts: a missing one is a typo. */
export function configClientSecret(c: ConfigClient, env: NodeJS.ProcessEnv): string | undefined {
  const secret = c.clientSecretEnv === undefined ? undefined : env[c.clientSecretEnv];
  if (c.clientSecretEnv !== undefined && !secret) {
    throw new GrantkeeperError(
      'bad_config',
      `client "${c.name}" reads its secret from ${c.clientSecretEnv}, which is not set: export it before starting`,
    );
  }
  return secret;
}

/**
 * Clients declared in the config file are registered (or updated in place) at start-up, so a
 * deployment can be described in one file. Secrets come from named environment variables only.
 */
export async function syncConfigClients(
  declared: readonly ConfigClient[],
  clients: ClientRepository,
  env: NodeJS.ProcessEnv,
  now: number,
): Promise<void> {
  for (const c of declared) {
    const secret = configClientSecret(c, env);
    if (c.burst !== undefined && c.rate === undefined) {
      throw new GrantkeeperError(
        'bad_config',
        `client "${c.name}" sets burst without rate: add "rate", e.g. "50/s"`,
      );
    }
    if ((c.spa && c.provider !== 'microsoft') || (c.testing && c.provider !== 'google')) {
      throw new GrantkeeperError(
        'bad_config',
        `client "${c.name}": spa is only for microsoft, testing only for google`,
      );
    }
    const rateLimit = rateLimitOf(c.rate, c.burst);
    const profile = { ...(await resolveProvider(providerSpec(c))), ...(rateLimit ? { rateLimit } : {}) };
    const authMethod = c.authMethod ?? (secret ? profile.confidentialAuthMethod : 'none');
    if (authMethod !== 'none' && !secret) {
      throw new GrantkeeperError(
        'bad_config',
        `client "${c.name}" uses ${authMethod} but has no secret: set clientSecretEnv, or authMethod "none" for a public client`,
      );
    }
    await clients.upsert({
      name: c.name,
      profile,
      clientId: c.clientId,
      ...(secret ? { clientSecret: secret } : {}),
      ...(c.secretExpires === undefined ? {} : { secretExpiresAt: c.secretExpires }),
      authMethod,
      scopes: c.scopes ?? profile.defaultScopes,
      ...(c.redirectUri ? { redirectUri: c.redirectUri } : {}),
      ...(c.authorizeParams ? { authorizeParams: c.authorizeParams } : {}),
      now,
    });
  }
}

function providerSpec(c: ConfigClient): ProviderSpec {
  switch (c.provider) {
    case 'microsoft':
      return {
        kind: 'microsoft',
        ...(c.tenant ? { tenant: c.tenant } : {}),
        ...(c.spa ? { spa: true } : {}),
      };
    case 'google':
      return { kind: 'google', ...(c.testing ? { testing: true } : {}) };
    case 'oidc':
      return {
        kind: 'oidc',
        ...(c.issuer ? { issuer: c.issuer } : {}),
        ...(c.endpoints ? { endpoints: c.endpoints } : {}),
      };
    default:
      return { kind: c.provider };
  }
}
