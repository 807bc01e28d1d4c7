import type { Sealer } from '../crypto/sealer.js';
import type { OpenedClient } from '../grants/ports.js';
import { type ClientRowShape, toOpenedClient } from './rows.js';

/**
 * Opened clients by id, valid while the row's updated_at is unchanged (another process or replica
 * may update it): a refresh opens its client with one indexed lookup of updated_at instead of a
 * full read, JSON parse and unseal. Each adapter reads; this decides what the reads mean.
 */
export class OpenedClients {
  private readonly opened = new Map<string, { updatedAt: number; client: OpenedClient }>();

  constructor(private readonly sealer: Sealer) {}

  /** The client opened while its row's updated_at was `updatedAt`; undefined: none, or the row is gone. */
  cached(id: string, updatedAt: number | undefined): OpenedClient | undefined {
    if (updatedAt === undefined) {
      this.opened.delete(id);
      return undefined;
    }
    const cached = this.opened.get(id);
    return cached?.updatedAt === updatedAt ? cached.client : undefined;
  }

  /** Opens the row just read, and keeps it for the row's current updated_at. */
  open(row: ClientRowShape): OpenedClient {
    const client = toOpenedClient(row, this.sealer);
    this.opened.set(row.id, { updatedAt: row.updatedAt, client });
    return client;
  }
}
