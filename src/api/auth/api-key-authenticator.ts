import { timingSafeEqual } from 'node:crypto';
import type { ApiKey, ApiKeyRepository } from '../../grants/ports.js';
import type { Logger } from '../../log/logger.js';
import { API_KEY_PREFIX, hashApiKey } from './api-keys.js';

/** Who is calling: an API key, its role and, for a reader, the grants it may read. */
export interface Principal {
  keyId: string;
  name: string;
  role: ApiKey['role'];
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
  private byId = new Map<string, Principal>();
  private readonly used = new Set<string>();
  private timer?: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(
    private readonly store: ApiKeyRepository,
    private readonly logger: Logger,
    private readonly options: { reloadMs?: number; now?: () => number } = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Loads the keys; call once before the first authenticate. */
  async load(): Promise<void> {
    await this.reload();
  }

  async authenticate(presented: string | undefined): Promise<Principal | undefined> {
    if (!presented || presented.length > MAX_KEY_LENGTH || !presented.startsWith(API_KEY_PREFIX))
      return undefined;
    const hash = hashApiKey(presented);
    const hex = hash.toString('hex');
    let known = this.keys.get(hex);
    if (!known) {
      const row = await this.store.findByHash(hex);
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
  async principalFor(keyId: string): Promise<Principal | undefined> {
    let known = this.byId.get(keyId);
    if (!known) {
      const key = await this.store.findById(keyId);
      if (key) {
        known = toPrincipal(key);
        this.byId.set(keyId, known);
      }
    }
    if (known) this.used.add(known.keyId);
    return known;
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.reloadMs ?? 30_000);
    this.timer.unref();
  }

  /** Writes pending `last_used_at` updates; call on shutdown too. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flushUsage().catch((err: Error) =>
      this.logger.warn({ err: { message: err.message } }, 'could not record API key use'),
    );
  }

  private tick(): void {
    this.flushUsage()
      .then(() => this.reload())
      .catch((err: Error) =>
        this.logger.warn({ err: { message: err.message } }, 'could not reload API keys'),
      );
  }

  private async flushUsage(): Promise<void> {
    if (this.used.size === 0) return;
    const ids = [...this.used];
    this.used.clear();
    await this.store.touch(ids, this.now());
  }

  private async reload(): Promise<void> {
    const known = (await this.store.listWithHashes()).map(toKnownKey);
    this.keys = new Map(known.map((k) => [k.hash.toString('hex'), k]));
    this.byId = new Map(known.map((k) => [k.keyId, k]));
  }

  private remember(row: ApiKey & { keyHash: string }): KnownKey {
    const known = toKnownKey(row);
    this.keys.set(known.hash.toString('hex'), known);
    this.byId.set(known.keyId, known);
    return known;
  }
}

function toPrincipal(key: ApiKey): Principal {
  const admin = key.role === 'admin';
  return {
    keyId: key.id,
    name: key.name,
    role: admin ? 'admin' : 'reader',
    // A reader without a grant list (made by hand) reads nothing: least privilege is never implicit.
    grantIds: admin ? null : new Set(key.grantIds ?? []),
  };
}

function toKnownKey(row: ApiKey & { keyHash: string }): KnownKey {
  return { ...toPrincipal(row), hash: Buffer.from(row.keyHash, 'hex') };
}

export function allows(principal: Principal, grantId: string): boolean {
  return principal.grantIds === null || principal.grantIds.has(grantId);
}
