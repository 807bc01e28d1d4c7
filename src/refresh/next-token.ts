import { ClientConfigError } from '../errors/grantkeeper-error.js';
import type { ServiceGrantKind, StoredGrant, TokenRequestParams } from '../grants/grant.js';
import type { OpenedClient } from '../grants/ports.js';
import { signAssertion } from '../oauth/client-assertion.js';
import type { RequestOptions, TokenClient, TokenEndpointTarget } from '../oauth/token-client.js';
import type { TokenSet } from '../oauth/token-response.js';

/** One token request for a claimed grant, sent inside the window its lease allows. */
export type NextTokenRequest = (opts: RequestOptions) => Promise<TokenSet>;

type TokenRequester = Pick<TokenClient, 'refresh' | 'clientCredentials' | 'jwtBearer'>;

/**
 * How a claimed grant gets its next token, by kind: its refresh token, or a new request of the
 * client's own. What the request needs is opened here, before the fence, so a value that does not
 * open breaks the grant before anything is sent.
 */
export function nextTokenRequest(
  tokenClient: TokenRequester,
  client: OpenedClient,
  claimed: StoredGrant,
): NextTokenRequest {
  const { grant } = claimed;
  if (grant.kind === 'authorization_code') {
    const refreshToken = claimed.tokens.refreshToken();
    return (opts) => tokenClient.refresh(client.target, refreshToken, opts);
  }
  return (opts) =>
    requestServiceToken(tokenClient, client, grant.kind as ServiceGrantKind, grant.tokenRequest ?? {}, opts);
}

/**
 * A token for a grant without a refresh token: its first (grant add) and every next one. A refresh
 * token the server adds anyway is dropped (RFC 6749 §4.4.3: it should send none): the next token is
 * a new request, never a refresh.
 */
export async function requestServiceToken(
  tokenClient: TokenRequester,
  client: OpenedClient,
  kind: ServiceGrantKind,
  request: TokenRequestParams,
  opts: RequestOptions = {},
): Promise<TokenSet> {
  const target: TokenEndpointTarget = {
    ...client.target,
    tokenEndpoint: client.profile.serviceTokenEndpoint ?? client.target.tokenEndpoint,
  };
  const tokens =
    kind === 'client_credentials'
      ? await tokenClient.clientCredentials(target, request, opts)
      : await jwtBearerToken(tokenClient, target, client, request, opts);
  const { refreshToken: _dropped, ...rest } = tokens;
  return rest;
}

/** RFC 7523 §2.1: the assertion is signed per request (a fresh jti), like a client assertion. */
async function jwtBearerToken(
  tokenClient: TokenRequester,
  target: TokenEndpointTarget,
  client: OpenedClient,
  request: TokenRequestParams,
  opts: RequestOptions,
): Promise<TokenSet> {
  const key = target.signingKey;
  if (!key) {
    throw new ClientConfigError(
      `client ${client.name} has no private key to sign JWT-bearer assertions with; register it with --private-key-file or --key-file`,
    );
  }
  const inClaim = client.profile.scopeInAssertion === true;
  const sub = request.subject ?? (inClaim ? undefined : target.clientId);
  const assertion = await signAssertion(key, {
    iss: target.clientId,
    aud: key.audience ?? target.tokenEndpoint,
    ...(sub ? { sub } : {}),
    ...(inClaim && request.scope ? { scope: request.scope } : {}),
  });
  return tokenClient.jwtBearer(
    target,
    assertion,
    inClaim ? {} : { ...(request.scope ? { scope: request.scope } : {}) },
    opts,
  );
}
