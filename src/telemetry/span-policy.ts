import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
} from '@opentelemetry/semantic-conventions';
import type { ProviderKind } from '../oauth/providers.js';
import type { RefreshResult, RefreshTrigger, TokenReadFailure } from '../refresh/outcomes.js';

/** Every span grantkeeper makes. */
export const SPAN_NAMES = {
  /** One refresh attempt: the root of a scheduled job, a child of the read that needed it. */
  refresh: 'grantkeeper.refresh',
  claim: 'grantkeeper.claim',
  /** The HTTP POST to the token endpoint. */
  tokenRequest: 'grantkeeper.token_request',
  /** Storing what the attempt ended with: new tokens, a rotated refresh token, or the failure. */
  commit: 'grantkeeper.commit',
  /** Queueing the grant's next job. */
  schedule: 'grantkeeper.schedule',
  tokenRead: 'grantkeeper.token_read',
} as const;
export type SpanName = (typeof SPAN_NAMES)[keyof typeof SPAN_NAMES];

/**
 * What a span may say, and all it may say: the allow-list. Every value is operator config (the
 * provider kind, the client's name), one of our own words, a vetted error code (token-errors.ts
 * keeps provider text and echoed secrets out of codes, as for metrics labels) or a number. A
 * client name is included because the operator chose it for an app registration, it names no
 * account, and it is what tells two apps on one provider apart; a grant's label names an account
 * and its id is a join key into the store, so those two are `GrantIdentity`, off by default.
 * Never a token, a URL's path or query, a request body or a provider's message.
 */
export interface SpanFacts {
  provider?: ProviderKind | 'unknown';
  client?: string;
  trigger?: RefreshTrigger;
  /** A refresh's RefreshResult status, a claim's 'claimed', a read's 'ok' or failure reason. */
  outcome?: RefreshResult['status'] | 'claimed' | 'ok' | TokenReadFailure;
  /** Where a token read's answer came from. */
  source?: 'store' | 'refresh';
  httpMethod?: 'POST';
  serverAddress?: string;
  serverPort?: number;
  httpStatus?: number;
  errorCode?: string;
  /** Which consecutive attempt this is (1 after a success). */
  attempt?: number;
  /** The grant version the attempt started from. */
  version?: number;
}

/** Exported only when the operator sets GRANTKEEPER_TRACE_GRANT_IDS=true. */
export interface GrantIdentity {
  grantId: string;
  grantLabel: string;
}

const ATTRIBUTE_KEYS: Record<keyof SpanFacts | keyof GrantIdentity, string> = {
  provider: 'grantkeeper.provider',
  client: 'grantkeeper.client',
  trigger: 'grantkeeper.trigger',
  outcome: 'grantkeeper.outcome',
  source: 'grantkeeper.token_read.source',
  httpMethod: ATTR_HTTP_REQUEST_METHOD,
  serverAddress: ATTR_SERVER_ADDRESS,
  serverPort: ATTR_SERVER_PORT,
  httpStatus: ATTR_HTTP_RESPONSE_STATUS_CODE,
  errorCode: ATTR_ERROR_TYPE,
  attempt: 'grantkeeper.refresh.attempt',
  version: 'grantkeeper.grant.version',
  grantId: 'grantkeeper.grant.id',
  grantLabel: 'grantkeeper.grant.label',
};

/** The OTel attributes for `facts`: only allow-listed keys, undefined values left out. */
export function toAttributes(facts: SpanFacts | GrantIdentity): Attributes {
  const attributes: Attributes = {};
  for (const [field, value] of Object.entries(facts)) {
    const key = ATTRIBUTE_KEYS[field as keyof typeof ATTRIBUTE_KEYS];
    if (key !== undefined && value !== undefined) attributes[key] = value as string | number;
  }
  return attributes;
}

/** The token endpoint as a span may name it: host and port, never the path or query. */
export function serverFacts(endpoint: string): Pick<SpanFacts, 'serverAddress' | 'serverPort'> {
  const url = new URL(endpoint);
  return {
    serverAddress: url.hostname,
    serverPort: url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
  };
}

/** A thrown error's class name (ours or a library's), never its message. */
export function errorClass(err: unknown): string {
  const name = err instanceof Error ? err.name : undefined;
  return name && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name) ? name : '_OTHER';
}
