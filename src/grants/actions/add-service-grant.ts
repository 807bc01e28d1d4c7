import { GrantkeeperError } from '../../errors/grantkeeper-error.js';
import type { TokenClient } from '../../oauth/token-client.js';
import { forServiceGrant, TokenEndpointError } from '../../oauth/token-errors.js';
import type { TokenSet } from '../../oauth/token-response.js';
import { issuedTokens, planAfterTokenResponse, timingFor } from '../../policy/refresh-plan.js';
import type { RefreshTimingPolicy } from '../../policy/refresh-timing.js';
import { requestServiceToken } from '../../refresh/next-token.js';
import type { ServiceGrantKind, TokenRequestParams } from '../grant.js';
import type { ClientRepository, ConsentTarget, GrantRepository, RefreshScheduler } from '../ports.js';
import { type SavedConsent, saveConsent } from './save-consent.js';

export interface ServiceGrantInput {
  clientRef: string;
  kind: ServiceGrantKind;
  label: string;
  request: TokenRequestParams;
}

/**
 * Adds a grant that needs no user (client credentials, JWT bearer): fetches its first token, which
 * proves the client may use the grant, stores it and queues the next request ahead of its expiry.
 * Running it again for the same label replaces that grant's request in place; a label that names
 * another client's grant, or a user's grant, is refused (its refresh token would be lost).
 */
export async function addServiceGrant(
  ctx: {
    grants: GrantRepository;
    clients: ClientRepository;
    scheduler: RefreshScheduler;
    tokenClient: Pick<TokenClient, 'refresh' | 'clientCredentials' | 'jwtBearer'>;
    timing: RefreshTimingPolicy;
    now?: () => number;
  },
  input: ServiceGrantInput,
): Promise<SavedConsent> {
  const now = ctx.now ?? Date.now;
  // Checked before the first request too, so a refused label costs no token.
  const mayReplace = (existing: ConsentTarget) => {
    if (existing.clientRef !== input.clientRef || existing.kind === 'authorization_code') {
      throw new GrantkeeperError(
        'label_taken',
        `the label ${input.label} names another grant (${existing.kind}${existing.clientRef === input.clientRef ? '' : ', another client'}): pick another label`,
      );
    }
  };
  const found = await ctx.grants.find(input.label);
  if (found) mayReplace(found.grant);
  const client = await ctx.clients.openById(input.clientRef);
  if (!client) throw new GrantkeeperError('unknown_client', 'the client was removed meanwhile');
  const sentAt = now();
  let tokens: TokenSet;
  try {
    tokens = await requestServiceToken(ctx.tokenClient, client, input.kind, input.request);
  } catch (err) {
    if (!(err instanceof TokenEndpointError)) throw err;
    throw new GrantkeeperError(
      'exchange_failed',
      `the first token request failed, nothing was stored: ${forServiceGrant(err).message}`,
      {
        cause: err,
      },
    );
  }
  const at = now();
  const plan = planAfterTokenResponse(tokens, sentAt, at, timingFor(client.profile, input.kind), ctx.timing);
  return saveConsent(
    ctx,
    {
      clientRef: input.clientRef,
      label: input.label,
      kind: input.kind,
      tokenRequest: input.request,
      ...(input.request.subject ? { subject: input.request.subject } : {}),
      ...issuedTokens(tokens, plan),
      refreshToken: '',
      now: at,
    },
    mayReplace,
  );
}
