import { timingSafeEqual } from 'node:crypto';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { plainText } from '../util/plain-text.js';

/** Why consent capture stopped; the message is written for the person at the terminal and the browser. */
export class ConsentError extends GrantkeeperError<'consent_failed'> {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('consent_failed', message, options);
  }
}

const PLAIN_WORDS: Record<string, string> = {
  access_denied: 'consent was refused: the account holder declined, or this account may not use the app',
  invalid_scope: 'the provider refused the requested scopes: check the scopes enabled for the app',
  unauthorized_client:
    'the provider does not let this client use the authorization code flow: check the app registration',
  unsupported_response_type: 'the provider does not let this client ask for an authorization code',
  invalid_request: 'the provider found the authorization request malformed (often the redirect URI)',
  server_error: 'the provider failed while handling the consent; try again',
  temporarily_unavailable: 'the provider is temporarily unavailable; try again in a moment',
  login_required: 'the provider needs the account holder to sign in',
  consent_required: 'the provider needs the account holder to consent interactively',
  interaction_required: 'the provider needs the account holder to interact with its page',
};

/** An RFC 6749 §4.1.2.1 error in plain words, with the provider's own code and description. */
export function describeAuthorizationError(error: string, description?: string | null): string {
  const code = plainText(error, 64);
  const plain = PLAIN_WORDS[code] ?? 'the provider refused the authorization request';
  const detail = description ? `: ${plainText(description)}` : '';
  return `${plain} (${code}${detail})`;
}

/** Equality for values an attacker may probe (state, nonce), in constant time. */
export function sameSecret(received: string, expected: string): boolean {
  const a = Buffer.from(received);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether a redirect's query carries exactly our state: only such a request answers this consent. */
export function carriesState(params: URLSearchParams, expectedState: string): boolean {
  const state = params.get('state');
  return state !== null && sameSecret(state, expectedState);
}

/**
 * Checks a redirect's query (RFC 6749 §4.1.2): the state must be ours (CSRF, RFC 6749 §10.12), an
 * error is reported in plain words, and otherwise exactly one code is returned.
 */
export function codeFromCallback(params: URLSearchParams, expectedState: string): string {
  const state = params.get('state');
  if (state === null)
    throw new ConsentError('the redirect carries no state parameter, so it cannot be trusted');
  if (!sameSecret(state, expectedState)) {
    throw new ConsentError(
      'the redirect carries a state that does not match this consent request (a stale or forged redirect); run seed again',
    );
  }
  const error = params.get('error');
  if (error !== null)
    throw new ConsentError(describeAuthorizationError(error, params.get('error_description')));
  const codes = params.getAll('code');
  if (codes.length !== 1 || !codes[0]) throw new ConsentError('the redirect carries no authorization code');
  return codes[0];
}

/**
 * What an operator pastes back in manual mode: the whole redirect URL, its query string, or just the
 * code. A URL or query must carry our state; a bare code has none to check.
 */
export function codeFromPaste(text: string, expectedState: string): string {
  const pasted = text.trim();
  if (pasted === '') throw new ConsentError('nothing was pasted');
  if (pasted.includes('://')) {
    let url: URL;
    try {
      url = new URL(pasted);
    } catch {
      throw new ConsentError('the pasted text is not a valid URL: paste the whole address from the browser');
    }
    return codeFromCallback(url.searchParams, expectedState);
  }
  if (/(^|[?&])(code|error|state)=/.test(pasted)) {
    return codeFromCallback(new URLSearchParams(pasted.replace(/^\?/, '')), expectedState);
  }
  if (!/^[\x21-\x7e]{1,4096}$/.test(pasted)) {
    throw new ConsentError('the pasted text is neither a redirect URL nor an authorization code');
  }
  return pasted;
}
