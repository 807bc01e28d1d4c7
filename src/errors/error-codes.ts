/**
 * grantkeeper's error vocabulary: one stable code per failure, the same from the API (`error` in
 * the body), the CLI (its message and exit code) and the library (`GrantkeeperError.code`, in
 * process or over HTTP). The README's table of codes is rendered from this one.
 */
export const ERROR_CODES = {
  bad_request: {
    httpStatus: 400,
    exitCode: 2,
    meaning: 'a request, flag or value that does not parse; nothing was changed',
  },
  unauthorized: { httpStatus: 401, exitCode: 1, meaning: 'no API key, or one grantkeeper does not know' },
  forbidden: {
    httpStatus: 403,
    exitCode: 1,
    meaning:
      'this API key may not use that grant or route (a scoped key reads only its grants; writes need an admin key)',
  },
  cross_site_request: {
    httpStatus: 403,
    exitCode: 1,
    meaning: "a browser write from another site, or without the page's CSRF token",
  },
  not_found: { httpStatus: 404, exitCode: 1, meaning: 'no grant has that id or label (or no such route)' },
  needs_reconsent: {
    httpStatus: 409,
    exitCode: 1,
    meaning: 'the provider refused the grant: capture consent again (`grantkeeper seed`)',
  },
  client_error: {
    httpStatus: 409,
    exitCode: 1,
    meaning:
      "the provider refused the client's registration (secret, id, key): fix the client, then `grantkeeper retry`",
  },
  broken: {
    httpStatus: 409,
    exitCode: 1,
    meaning: 'grantkeeper cannot use the grant: its tokens do not open with the key, or its client is gone',
  },
  client_misconfigured: {
    httpStatus: 409,
    exitCode: 1,
    meaning:
      'the client registration cannot make a token request (no secret or key for its auth method, an endpoint that is not https): fix it with `client add`',
  },
  misdirected_request: {
    httpStatus: 421,
    exitCode: 1,
    meaning: 'the API does not answer for that Host header (`GRANTKEEPER_API_ALLOWED_HOSTS`)',
  },
  min_valid_unsatisfiable: {
    httpStatus: 422,
    exitCode: 1,
    meaning: "the minimum validity asked for is longer than this provider's tokens live",
  },
  malformed_link: {
    httpStatus: 400,
    exitCode: 2,
    meaning: 'a consent link that is not one grantkeeper makes',
  },
  bad_state: {
    httpStatus: 400,
    exitCode: 2,
    meaning: "a redirect to the callback without one well-formed `state` (not from the provider's consent)",
  },
  unknown_state: {
    httpStatus: 400,
    exitCode: 2,
    meaning: 'a redirect to the callback whose `state` grantkeeper did not send, or already used',
  },
  missing_code: { httpStatus: 400, exitCode: 2, meaning: 'a redirect to the callback without a code' },
  wrong_issuer: {
    httpStatus: 400,
    exitCode: 2,
    meaning: "a redirect naming another authorization server than the client's (RFC 9207 `iss`)",
  },
  authorization_refused: {
    httpStatus: 400,
    exitCode: 2,
    meaning:
      'the provider answered the consent with an error (the account owner declined, or the request was refused)',
  },
  unknown_link: {
    httpStatus: 404,
    exitCode: 1,
    meaning: 'no consent link has that token (or its client was removed)',
  },
  consent_refused: {
    httpStatus: 409,
    exitCode: 1,
    meaning: "a consent for another account than the one the link's label already holds: nothing was stored",
  },
  label_taken: {
    httpStatus: 409,
    exitCode: 1,
    meaning:
      'the label belongs to another grant this may not replace (another client or kind): pick another label',
  },
  no_public_url: {
    httpStatus: 409,
    exitCode: 1,
    meaning: 'consent links need `GRANTKEEPER_PUBLIC_URL`: where browsers reach the API',
  },
  link_used: { httpStatus: 410, exitCode: 1, meaning: 'the consent link was already used; make a new one' },
  link_expired: { httpStatus: 410, exitCode: 1, meaning: 'the consent link has expired; make a new one' },
  exchange_failed: {
    httpStatus: 502,
    exitCode: 1,
    meaning:
      "the provider did not issue the first tokens (a consent's code exchange, a service grant's first request): nothing was stored",
  },
  unknown_client: {
    httpStatus: 404,
    exitCode: 1,
    meaning: 'no client has that name, or the grant names a client that was removed',
  },
  not_applicable: {
    httpStatus: 409,
    exitCode: 2,
    meaning: "the action does not apply to this grant's kind (a service grant has no keep-alive mode)",
  },
  name_taken: { httpStatus: 409, exitCode: 1, meaning: 'an API key of that name already exists' },
  revoke_failed: {
    httpStatus: 502,
    exitCode: 1,
    meaning: 'the provider did not revoke the grant; it is kept: retry, or drop it with `grantkeeper remove`',
  },
  consent_failed: {
    httpStatus: 400,
    exitCode: 1,
    meaning:
      'consent capture stopped (no usable code in the redirect or the pasted text, the provider refused, or it was cancelled): nothing was stored',
  },
  bad_key_file: {
    httpStatus: 400,
    exitCode: 2,
    meaning:
      'a signing key, certificate or service-account file that grantkeeper cannot use; the message says why',
  },
  bad_provider: {
    httpStatus: 400,
    exitCode: 1,
    meaning:
      'the provider settings describe no usable OAuth server (a bad tenant, an issuer without discovery or a client authentication grantkeeper speaks)',
  },
  bad_config: {
    httpStatus: 500,
    exitCode: 1,
    meaning: 'a setting (config file, environment variable) grantkeeper cannot use; the message names it',
  },
  sealing_key_unusable: {
    httpStatus: 500,
    exitCode: 1,
    meaning: 'the sealing key is missing, malformed or not the one that sealed the store',
  },
  store_unusable: {
    httpStatus: 503,
    exitCode: 1,
    meaning:
      'the store cannot be opened: missing, locked, moved to PostgreSQL, on a full disk, or unreachable',
  },
  migration_refused: {
    httpStatus: 409,
    exitCode: 1,
    meaning:
      'the store cannot be moved now (already moved, a target that is not empty, a service still running)',
  },
  damaged_record: {
    httpStatus: 500,
    exitCode: 1,
    meaning:
      'a stored row that does not parse (a client profile, key description or parameters): the store was edited by hand',
  },
  redis_unavailable: {
    httpStatus: 503,
    exitCode: 1,
    meaning:
      'Redis cannot be reached, or the managed redis-server cannot be started or is owned by another process',
  },
  address_unavailable: {
    httpStatus: 503,
    exitCode: 1,
    meaning:
      'grantkeeper cannot listen where it was told (the API or the consent redirect): the port is in use or not ours',
  },
  internal: { httpStatus: 500, exitCode: 1, meaning: 'a bug: the log has the details' },
  http_error: {
    httpStatus: 502,
    exitCode: 1,
    meaning: "the library over HTTP got an answer without grantkeeper's error body (a proxy in between?)",
  },
  bad_response: {
    httpStatus: 502,
    exitCode: 1,
    meaning: 'the library over HTTP got a success without a token in it',
  },
  unavailable: {
    httpStatus: 503,
    exitCode: 1,
    meaning:
      'no fresh token now: the provider is being retried, the client is paced, or another process is refreshing; retry at `Retry-After` / `retryAt`',
  },
  storage_unavailable: {
    httpStatus: 503,
    exitCode: 1,
    meaning:
      'the database cannot store a new token now (disk full, locked); retry at `Retry-After` / `retryAt`',
  },
} as const satisfies Record<string, { httpStatus: number; exitCode: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.hasOwn(ERROR_CODES, value);
}
