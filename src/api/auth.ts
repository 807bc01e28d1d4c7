import { timingSafeEqual } from 'node:crypto';
import type { ApiKeyRole, ApiKeyRow } from '../../db/schema.js';
import type { Logger } from '../log/logger.js';
import { API_KEY_PREFIX, type ApiKeyStore, hashApiKey } from '../store/api-key-store.js';

/** Who is calling: an API key, its role and, for a reader, the grants it may read. */
export interface Principal {
  keyId: string;
  name: string;
  role: ApiKeyRole;
  /** null for an admin: every grant. */
  grantIds: ReadonlySet<string> | null;
}

interface KnownKey extends Principal {
  hash: Buffer;
}

const MAX_KEY_LENGTH = 200;

/**
 * Checks bearer keys against an in-memory copy of the api_keys table, so the hot token route does
 * no db work for authentication. A miss is one indexed lookup (a key created a moment ago); the copy
 * is reloaded periodically, so a revoked key stops working within one reload period.
 * `last_used_at` is written in batches on the same timer.
 */
export class ApiKeyAuthenticator {
  private keys = new Map<string, KnownKey>();
  private byId = new Map<string, KnownKey>();
  private readonly used = new Set<string>();
  private timer?: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(
    private readonly store: ApiKeyStore,
    private readonly logger: Logger,
    private readonly options: { reloadMs?: number; now?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.reload();
  }

  authenticate(presented: string | undefined): Principal | undefined {
    if (!presented || presented.length > MAX_KEY_LENGTH || !presented.startsWith(API_KEY_PREFIX))
      return undefined;
    const hash = hashApiKey(presented);
    const hex = hash.toString('hex');
    let known = this.keys.get(hex);
    if (!known) {
      const row = this.store.findByHash(hex);
      if (row) known = this.remember(row);
    }
    // The map lookup found the candidate; the constant-time compare is what decides. Keying the map
    // (and the db index) by SHA-256 of the key is what makes the lookup safe too: its timing depends
    // only on the hash, and an attacker cannot steer a hash toward a stored one byte by byte without
    // a preimage, so timing reveals nothing about a real key.
    if (!known || !timingSafeEqual(known.hash, hash)) return undefined;
    this.used.add(known.keyId);
    return known;
  }

  /**
   * The key a browser session was opened with, if it still exists. A key revoked in another process
   * is dropped at the next reload; one created there moments ago is looked up.
   */
  principalFor(keyId: string): Principal | undefined {
    let known = this.byId.get(keyId);
    if (!known) {
      const row = this.store.findById(keyId);
      if (row) known = this.remember(row);
    }
    if (known) this.used.add(known.keyId);
    return known;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.reloadMs ?? 30_000);
    this.timer.unref();
  }

  /** Writes pending `last_used_at` updates; call on shutdown too. */
  stop(): void {
    clearInterval(this.timer);
    this.flushUsage();
  }

  private tick(): void {
    try {
      this.flushUsage();
      this.reload();
    } catch (err) {
      this.logger.warn({ err: { message: (err as Error).message } }, 'could not reload API keys');
    }
  }

  private flushUsage(): void {
    if (this.used.size === 0) return;
    const ids = [...this.used];
    this.used.clear();
    this.store.touch(ids, this.now());
  }

  private reload(): void {
    const known = this.store.list().map(toKnownKey);
    this.keys = new Map(known.map((k) => [k.hash.toString('hex'), k]));
    this.byId = new Map(known.map((k) => [k.keyId, k]));
  }

  private remember(row: ApiKeyRow): KnownKey {
    const known = toKnownKey(row);
    this.keys.set(known.hash.toString('hex'), known);
    this.byId.set(known.keyId, known);
    return known;
  }
}

function toKnownKey(row: ApiKeyRow): KnownKey {
  const admin = row.role === 'admin';
  return {
    keyId: row.id,
    name: row.name,
    role: admin ? 'admin' : 'reader',
    // A reader row without a grant list (made by hand) reads nothing: least privilege is never implicit.
    grantIds: admin ? null : new Set(row.grantIds ?? []),
    hash: Buffer.from(row.keyHash, 'hex'),
  };
}

export function allows(principal: Principal, grantId: string): boolean {
  return principal.grantIds === null || principal.grantIds.has(grantId);
}
