/**
 * What each sealed value is bound to (AES-GCM additional data): a value copied into another row or
 * field does not open. Every adapter seals with these, so a store moved between adapters opens with
 * the same key.
 */
export function sealContext(grantId: string, field: 'access_token' | 'refresh_token'): string {
  return `grant:${grantId}:${field}`;
}

export function secretContext(clientId: string): string {
  return `client:${clientId}:secret`;
}

/** The secret a rotation replaced, kept as a fallback: its own field, so it cannot pose as the current one. */
export function previousSecretContext(clientId: string): string {
  return `client:${clientId}:previous_secret`;
}

export function privateKeyContext(clientId: string): string {
  return `client:${clientId}:private_key`;
}

/** A consent link's pending PKCE verifier: with the provider's code it is worth a grant. */
export function codeVerifierContext(stateHash: string): string {
  return `consent:${stateHash}:code_verifier`;
}

/** The `meta` row holding a value sealed at creation, and what that value is bound to. */
export const KEY_CHECK_KEY = 'key_check';
export const KEY_CHECK_CONTEXT = 'meta:key_check';
export const KEY_CHECK_VALUE = 'grantkeeper';
