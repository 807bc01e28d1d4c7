import { request } from 'undici';
import { z } from 'zod';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { assertSecureEndpoint, discardBody, readCapped } from './token-client.js';

export interface IssuerMetadata {
  issuer: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint?: string;
  userinfoEndpoint?: string;
  introspectionEndpoint?: string;
  /** RFC 8628 §4: where device-code consent starts. */
  deviceAuthorizationEndpoint?: string;
  /** The key set that signs its id_tokens. */
  jwksUri?: string;
  tokenEndpointAuthMethodsSupported?: string[];
  codeChallengeMethodsSupported?: string[];
}

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_METADATA_BYTES = 256 * 1024;

const metadataSchema = z.object({
  issuer: z.string().min(1),
  authorization_endpoint: z.string().min(1),
  token_endpoint: z.string().min(1),
  revocation_endpoint: z.string().min(1).optional(),
  userinfo_endpoint: z.string().min(1).optional(),
  introspection_endpoint: z.string().min(1).optional(),
  device_authorization_endpoint: z.string().min(1).optional(),
  jwks_uri: z.string().min(1).optional(),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  code_challenge_methods_supported: z.array(z.string()).optional(),
});

/** Thrown per document; collected so the final error says what every attempt saw. */
class AttemptFailed extends Error {}

const stripSlash = (s: string) => s.replace(/\/+$/, '');

/**
 * Both well-known locations for an issuer: OpenID Connect Discovery appends to the issuer's path,
 * RFC 8414 §3.1 inserts the well-known segment between host and path.
 */
export function wellKnownUrls(issuer: URL): { openid: string; oauth: string } {
  const path = stripSlash(issuer.pathname);
  return {
    openid: `${issuer.origin}${path}/.well-known/openid-configuration`,
    oauth: `${issuer.origin}/.well-known/oauth-authorization-server${path}`,
  };
}

export async function discoverIssuer(
  issuer: string,
  opts: { timeoutMs?: number } = {},
): Promise<IssuerMetadata> {
  const url = assertSecureEndpoint(issuer, 'issuer');
  if (url.search)
    throw new GrantkeeperError(
      'bad_provider',
      `issuer ${url.origin}${url.pathname} must not have a query string`,
    );
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { openid, oauth } = wellKnownUrls(url);
  const failures: string[] = [];
  for (const location of [openid, oauth]) {
    try {
      return toMetadata(await fetchJson(location, timeoutMs), issuer);
    } catch (err) {
      if (!(err instanceof AttemptFailed || err instanceof GrantkeeperError)) throw err;
      failures.push(`${location}: ${err.message}`);
    }
  }
  throw new GrantkeeperError(
    'bad_provider',
    `OAuth discovery failed for issuer ${issuer} (tried ${failures.join('; ')}); ` +
      'check the issuer URL or give the endpoints explicitly',
  );
}

function toMetadata(json: unknown, expectedIssuer: string): IssuerMetadata {
  const parsed = metadataSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'document'} ${i.message}`);
    throw new AttemptFailed(`invalid metadata (${issues.join(', ')})`);
  }
  const m = parsed.data;
  // The issuer check stops a document from speaking for another server (RFC 8414 §3.3, OIDC Discovery §4.3);
  // only a trailing slash is forgiven since operators often type one.
  if (stripSlash(m.issuer) !== stripSlash(expectedIssuer)) {
    throw new AttemptFailed(`issuer mismatch: the document says "${m.issuer}"`);
  }
  const endpoint = (value: string, name: string) => assertSecureEndpoint(value, name).href;
  const meta: IssuerMetadata = {
    issuer: m.issuer,
    authorizationEndpoint: endpoint(m.authorization_endpoint, 'authorization_endpoint'),
    tokenEndpoint: endpoint(m.token_endpoint, 'token_endpoint'),
  };
  if (m.revocation_endpoint) meta.revocationEndpoint = endpoint(m.revocation_endpoint, 'revocation_endpoint');
  if (m.userinfo_endpoint) meta.userinfoEndpoint = endpoint(m.userinfo_endpoint, 'userinfo_endpoint');
  if (m.introspection_endpoint) {
    meta.introspectionEndpoint = endpoint(m.introspection_endpoint, 'introspection_endpoint');
  }
  if (m.device_authorization_endpoint) {
    meta.deviceAuthorizationEndpoint = endpoint(
      m.device_authorization_endpoint,
      'device_authorization_endpoint',
    );
  }
  if (m.jwks_uri) meta.jwksUri = endpoint(m.jwks_uri, 'jwks_uri');
  if (m.token_endpoint_auth_methods_supported) {
    meta.tokenEndpointAuthMethodsSupported = m.token_endpoint_auth_methods_supported;
  }
  if (m.code_challenge_methods_supported)
    meta.codeChallengeMethodsSupported = m.code_challenge_methods_supported;
  return meta;
}

async function fetchJson(location: string, timeoutMs: number): Promise<unknown> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await request(location, {
      method: 'GET',
      headers: { accept: 'application/json' },
      signal: controller.signal,
    });
    if (res.statusCode !== 200) {
      discardBody(res.body);
      throw new AttemptFailed(`HTTP ${res.statusCode}`);
    }
    const raw = await readCapped(res.body, MAX_METADATA_BYTES);
    if (raw === undefined) throw new AttemptFailed(`document larger than ${MAX_METADATA_BYTES} bytes`);
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      throw new AttemptFailed('not JSON');
    }
  } catch (err) {
    if (err instanceof AttemptFailed) throw err;
    if (controller.signal.aborted) throw new AttemptFailed(`no answer within ${timeoutMs} ms`);
    throw new AttemptFailed(err instanceof Error ? err.message : 'request failed', { cause: err });
  } finally {
    clearTimeout(timer);
  }
}
