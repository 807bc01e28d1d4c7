/**
 * What both dialects' schemas must declare alike and can share as plain values: the column
 * defaults their migrations write. Dialect-free (no drizzle builder here); like the schemas it
 * imports nothing from src/.
 */

/** Defaults of text columns; the adapter parses them like any stored word (src/store/rows.ts). */
export const DEFAULTS = {
  grantKind: 'authorization_code',
  grantMode: 'eager',
  apiKeyRole: 'reader',
} as const;
