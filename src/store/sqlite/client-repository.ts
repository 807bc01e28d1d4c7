import { and, asc, eq, isNotNull, sql } from 'drizzle-orm';
import { type ClientRow, clients, grants } from '../../../db/sqlite/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import type { Client, ClientInput, ClientRepository, OpenedClient, SecretSlot } from '../../grants/ports.js';
import { newId } from '../ids.js';
import { OpenedClients } from '../opened-clients.js';
import { clientValues, retiredSecretValues, rotatedSecretValues, toClient } from '../rows.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

/** OAuth clients on SQLite; client secrets are sealed at rest like tokens. */
export class SqliteClientRepository implements ClientRepository {
  private readonly opened: OpenedClients;
  private readonly updatedAtById;

  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {
    this.opened = new OpenedClients(sealer);
    this.updatedAtById = db
      .select({ updatedAt: clients.updatedAt })
      .from(clients)
      .where(eq(clients.id, sql.placeholder('id')))
      .prepare();
  }

  async openById(id: string): Promise<OpenedClient | undefined> {
    return guarded(() => {
      const current = this.updatedAtById.get({ id });
      const cached = this.opened.cached(id, current?.updatedAt);
      if (cached || !current) return cached;
      const row = this.row(id);
      return row && this.opened.open(row);
    });
  }

  async get(id: string): Promise<Client | undefined> {
    return guarded(() => {
      const row = this.row(id);
      return row && toClient(row);
    });
  }

  async findByName(name: string): Promise<Client | undefined> {
    return guarded(() => {
      const row = this.db.select().from(clients).where(eq(clients.name, name)).get();
      return row && toClient(row);
    });
  }

  async list(): Promise<Client[]> {
    return guarded(() => this.db.select().from(clients).orderBy(asc(clients.name)).all().map(toClient));
  }

  async upsert(input: ClientInput): Promise<Client> {
    // IMMEDIATE: the write lock before the read, so two processes adding one name cannot both insert.
    return guarded(() =>
      this.db.transaction(
        (tx) => {
          const existing = tx.select().from(clients).where(eq(clients.name, input.name)).get();
          const id = existing?.id ?? newId('c');
          const values = clientValues(input, id, this.sealer);
          const row = existing
            ? tx.update(clients).set(values).where(eq(clients.id, id)).returning().get()
            : tx
                .insert(clients)
                .values({ ...values, id, name: input.name, createdAt: input.now })
                .returning()
                .get();
          return toClient(row);
        },
        { behavior: 'immediate' },
      ),
    );
  }

  async remove(id: string, opts: { withGrants: boolean }): Promise<{ grantLabels: string[] } | undefined> {
    return guarded(() =>
      this.db.transaction((tx) => {
        const owned = tx
          .select({ label: grants.label })
          .from(grants)
          .where(eq(grants.clientRef, id))
          .orderBy(asc(grants.label))
          .all();
        if (owned.length > 0 && !opts.withGrants) return undefined;
        tx.delete(grants).where(eq(grants.clientRef, id)).run();
        const removed = tx.delete(clients).where(eq(clients.id, id)).run().changes === 1;
        return removed ? { grantLabels: owned.map((g) => g.label) } : undefined;
      }),
    );
  }

  async rotateSecret(
    id: string,
    next: { secret: string; expiresAt: number | null; now: number },
  ): Promise<Client | undefined> {
    return guarded(() =>
      this.db.transaction(
        (tx) => {
          const row = tx.select().from(clients).where(eq(clients.id, id)).get();
          const values = row && rotatedSecretValues(row, next, this.sealer);
          if (!values) return undefined;
          return toClient(tx.update(clients).set(values).where(eq(clients.id, id)).returning().get());
        },
        { behavior: 'immediate' },
      ),
    );
  }

  async retireSecret(id: string, now: number): Promise<Client | undefined> {
    return guarded(() => {
      const row = this.db
        .update(clients)
        .set(retiredSecretValues(now))
        .where(and(eq(clients.id, id), isNotNull(clients.previousSecretSealed)))
        .returning()
        .get();
      return row && toClient(row);
    });
  }

  async recordSecretInUse(id: string, slot: SecretSlot, at: number): Promise<void> {
    // updated_at moves too, so every process's cached opened client learns it and stops recording.
    guarded(() =>
      this.db
        .update(clients)
        .set({ secretInUse: slot, secretInUseAt: at, updatedAt: sql`max(${clients.updatedAt} + 1, ${at})` })
        .where(eq(clients.id, id))
        .run(),
    );
  }

  private row(id: string): ClientRow | undefined {
    return this.db.select().from(clients).where(eq(clients.id, id)).get();
  }
}
