import { plainText } from '../util/plain-text.js';
import { tokenErrorResponseSchema } from './token-response.js';

export type TokenErrorKind = 'permanent' | 'transient';
export type TokenErrorOutcome = 'needs_reconsent' | 'client_error' | 'retry';
export type HttpHeaders = Record<string, string | string[] | undefined>;

export interface TokenEndpointErrorInit {
  kind: TokenErrorKind;
  outcome: TokenErrorOutcome;
  code: string;
  status?: number;
  retryAfterMs?: number;
  /** The server's error_description; sanitized again here, so raw text is safe to pass. */
  description?: string;
  spentToken?: boolean;
  /** False when the request never left this process (refused connection, closed send window). */
  requestSent?: boolean;
  /** The provider may have acted on the request, but no usable answer came back (invariant 2). */
  answerLost?: boolean;
  /** A 4xx without an RFC 6749 error body: the server gives no reason. */
  unexplained?: boolean;
  /** Replaces the default message; must not contain secrets. */
  message?: string;
}

const MAX_DESCRIPTION = 200;

const OUTCOME_TEXT: Record<TokenErrorOutcome, string> = {
  needs_reconsent: 'the grant is dead and the account must consent again',
  client_error: 'the client registration was rejected; check its id, secret or key and allowed grants',
  retry: 'transient',
};

/**
 * A failed token request. The message is written for operators and never holds a token, secret or
 * request body: only our own words, the status, a vetted error code and a scrubbed server description.
 */
export class TokenEndpointError extends Error {
  override readonly name = 'TokenEndpointError';
  readonly kind: TokenErrorKind;
  readonly outcome: TokenErrorOutcome;
  readonly code: string;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly description?: string;
  /** The refresh token we sent is no longer usable (invariant 4: check the db before declaring death). */
  readonly spentToken: boolean;
  readonly requestSent: boolean;
  readonly answerLost: boolean;
  readonly unexplained: boolean;

  constructor(init: TokenEndpointErrorInit, options?: { cause?: unknown }) {
    const description = init.description === undefined ? undefined : sanitizeText(init.description);
    super(init.message ?? defaultMessage({ ...init, description }), options);
    this.kind = init.kind;
    this.outcome = init.outcome;
    this.code = init.code;
    this.spentToken = init.spentToken ?? false;
    this.requestSent = init.requestSent ?? true;
    this.answerLost = this.requestSent && (init.answerLost ?? false);
    this.unexplained = init.unexplained ?? false;
    if (init.status !== undefined) this.status = init.status;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
    if (description) this.description = description;
  }
}

function defaultMessage(e: TokenEndpointErrorInit): string {
  const status = e.status === undefined ? '' : ` (HTTP ${e.status})`;
  const said = e.description ? `; server said "${e.description}"` : '';
  const retry = e.retryAfterMs === undefined ? '' : `; Retry-After ${Math.ceil(e.retryAfterMs / 1000)} s`;
  return `token endpoint error ${e.code}${status}: ${OUTCOME_TEXT[e.outcome]}${said}${retry}`;
}

// Long runs of token alphabet mixing letters and digits look like credentials; UUIDs (Microsoft trace ids) do not.
const TOKEN_LIKE = /[A-Za-z0-9\-._~+/=]{24,}/g;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Makes server-supplied text safe for messages and logs: control characters out, our own secrets and
 * anything token-like redacted, then capped. Secrets are replaced before truncation so no fragment survives.
 */
export function sanitizeText(raw: string, secrets: readonly string[] = []): string {
  let text = plainText(raw, Number.POSITIVE_INFINITY);
  for (const secret of secrets) {
    if (secret.length >= 4) text = text.split(secret).join('[redacted]');
  }
  text = text
    .replace(TOKEN_LIKE, (run) =>
      /\d/.test(run) && /[A-Za-z]/.test(run) && !UUID.test(run) ? '[redacted]' : run,
    )
    .replace(/ {2,}/g, ' ')
    .trim();
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION - 1)}…` : text;
}

/** Retry-After as delta-seconds or HTTP-date, in ms from `now`; never negative. */
export function parseRetryAfter(
  value: string | string[] | undefined | null,
  now: number,
): number | undefined {
  const raw = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!raw) return undefined;
  if (/^\d+$/.test(raw)) {
    const ms = Number(raw) * 1000;
    return Number.isFinite(ms) ? ms : undefined;
  }
  // Date.parse accepts nearly anything ("1", "-5"), so insist on the weekday every HTTP-date format starts with.
  if (!/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? /i.test(raw)) return undefined;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const RECONSENT_CODES = new Set(['interaction_required', 'consent_required', 'login_required']);
const CLIENT_ERROR_CODES = new Set([
  'invalid_client',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
]);
const RFC_CODES = new Set([
  'invalid_request',
  'invalid_grant',
  'temporarily_unavailable',
  'server_error',
  // RFC 8628 §3.5, the device-code grant's own answers.
  'authorization_pending',
  'slow_down',
  'access_denied',
  'expired_token',
  ...RECONSENT_CODES,
  ...CLIENT_ERROR_CODES,
]);
// X's answer when a spent refresh token is replayed: "Value passed for the token was invalid."
const X_SPENT_TOKEN = /\btoken\b.*\binvalid\b/i;
// Error codes become metrics labels and log fields; anything odd falls back to the HTTP status.
const SAFE_CODE = /^[A-Za-z0-9_.-]{1,40}$/;

export interface TokenErrorInput {
  status: number;
  /** Parsed JSON, or undefined when the body was empty or not JSON. */
  body: unknown;
  headers?: HttpHeaders;
  now: number;
  /** The secrets we sent (refresh token, client secret, code, verifier): never echoed even if the server does. */
  redact?: readonly string[];
  /** For a 2xx: what was wrong with the body (our words, no token). */
  problem?: string;
}

/**
 * Classifies a token endpoint answer that did not yield tokens (RFC 6749 §5.2). Only unambiguous
 * evidence is permanent: unknown codes and statuses retry, since a wrongly killed grant costs a human
 * re-consent while a wrongly retried one only costs backed-off requests.
 */
export function classifyTokenError({
  status,
  body,
  headers,
  now,
  redact,
  problem,
}: TokenErrorInput): TokenEndpointError {
  const retryAfterMs = parseRetryAfter(headers?.['retry-after'], now);
  const parsed = tokenErrorResponseSchema.safeParse(body);
  const oauth = parsed.success ? parsed.data : undefined;
  const base = {
    status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    ...(oauth?.error_description === undefined
      ? {}
      : { description: sanitizeText(oauth.error_description, redact) }),
  };
  const transient = (code: string, extra: Partial<TokenEndpointErrorInit> = {}) =>
    new TokenEndpointError({ ...base, kind: 'transient', outcome: 'retry', code, ...extra });

  if (status >= 200 && status < 300) {
    const what =
      body === undefined ? 'a body that is not JSON' : (problem ?? 'JSON without a usable access_token');
    // The provider says it succeeded: it may have rotated the refresh token we can no longer read.
    return transient('bad_response', {
      answerLost: true,
      message: `token endpoint answered HTTP ${status} with ${what}`,
    });
  }
  if (status === 429) return transient('rate_limited');
  if (status < 400 || status >= 500) return transient(`http_${status}`);
  if (!oauth) return transient(`http_${status}`, { unexplained: status !== 408 });

  // A server echoing a secret as its error code must not put it in messages, logs or metric labels
  // (the RFC's own codes are public words, so a short secret inside one does not count).
  const echoesSecret =
    !RFC_CODES.has(oauth.error) && (redact?.some((s) => s.length >= 4 && oauth.error.includes(s)) ?? false);
  const code = SAFE_CODE.test(oauth.error) && !echoesSecret ? oauth.error : `http_${status}`;
  if (
    code === 'invalid_grant' ||
    (code === 'invalid_request' && status === 400 && X_SPENT_TOKEN.test(oauth.error_description ?? ''))
  ) {
    return new TokenEndpointError({
      ...base,
      kind: 'permanent',
      outcome: 'needs_reconsent',
      code,
      spentToken: true,
    });
  }
  if (RECONSENT_CODES.has(code)) {
    return new TokenEndpointError({ ...base, kind: 'permanent', outcome: 'needs_reconsent', code });
  }
  if (CLIENT_ERROR_CODES.has(code)) {
    return new TokenEndpointError({ ...base, kind: 'permanent', outcome: 'client_error', code });
  }
  return transient(code);
}

/**
 * The same answer to a grant without a refresh token (client credentials, JWT bearer): nothing a
 * user consented to can be dead, so `invalid_grant` and the consent codes mean the server refused
 * the client's own request (its credentials, its assertion, a grant type it may not use).
 */
export function forServiceGrant(error: TokenEndpointError): TokenEndpointError {
  if (error.outcome !== 'needs_reconsent') return error;
  return new TokenEndpointError(
    {
      kind: error.kind,
      outcome: 'client_error',
      code: error.code,
      requestSent: error.requestSent,
      ...(error.status === undefined ? {} : { status: error.status }),
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      ...(error.description === undefined ? {} : { description: error.description }),
    },
    { cause: error },
  );
}

export function networkError(cause: unknown, requestSent: boolean): TokenEndpointError {
  const detail = cause instanceof Error ? sanitizeText(cause.message) : 'unknown error';
  const code = (cause as { code?: unknown } | undefined)?.code;
  const label = typeof code === 'string' && SAFE_CODE.test(code) ? ` [${code}]` : '';
  return new TokenEndpointError(
    {
      kind: 'transient',
      outcome: 'retry',
      code: 'network',
      requestSent,
      answerLost: true,
      message: `token endpoint unreachable: ${detail}${label}`,
    },
    { cause },
  );
}

export function timeoutError(timeoutMs: number, requestSent: boolean): TokenEndpointError {
  return new TokenEndpointError({
    kind: 'transient',
    outcome: 'retry',
    code: 'timeout',
    requestSent,
    answerLost: true,
    message: `token endpoint gave no complete answer within ${timeoutMs} ms`,
  });
}

/** The send window closed before the request was written (the process stalled): nothing left. */
export function notSentError(): TokenEndpointError {
  return new TokenEndpointError({
    kind: 'transient',
    outcome: 'retry',
    code: 'not_sent',
    requestSent: false,
    message: 'the token request was not sent: its lease could have run out before an answer',
  });
}

export function responseTooLargeError(
  limitBytes: number,
  status?: number,
  retryAfterMs?: number,
): TokenEndpointError {
  const success = status !== undefined && status >= 200 && status < 300;
  return new TokenEndpointError({
    kind: 'transient',
    outcome: 'retry',
    code: 'response_too_large',
    ...(status === undefined ? {} : { status }),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    // A success over the cap may carry a rotated refresh token we refused to read.
    answerLost: success,
    message: `token endpoint response exceeded ${limitBytes} bytes and was abandoned`,
  });
}
