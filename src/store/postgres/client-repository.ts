import { and, asc, eq, isNotNull, sql } from 'drizzle-orm';
import type pg from 'pg';
import { type ClientRow, clients, grants } from '../../../db/postgres/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import type { Client, ClientInput, ClientRepository, OpenedClient, SecretSlot } from '../../grants/ports.js';
import { newId } from '../ids.js';
import { OpenedClients } from '../opened-clients.js';
import { clientValues, retiredSecretValues, rotatedSecretValues, toClient } from '../rows.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

/** OAuth clients on PostgreSQL; client secrets are sealed at rest like tokens. */
export class PostgresClientRepository implements ClientRepository {
  private readonly opened: OpenedClients;

  constructor(
    private readonly db: PgDb,
    private readonly pool: pg.Pool,
    private readonly sealer: Sealer,
  ) {
    this.opened = new OpenedClients(sealer);
  }

  async openById(id: string): Promise<OpenedClient | undefined> {
    return guarded(async () => {
      const { rows } = await this.pool.query<{ updatedAt: number }>({
        name: 'gk_client_updated_at',
        text: 'select updated_at as "updatedAt" from clients where id = $1',
        values: [id],
      });
      const current = rows[0];
      const cached = this.opened.cached(id, current?.updatedAt);
      if (cached || !current) return cached;
      const row = await this.row(id);
      return row && this.opened.open(row);
    });
  }

  async get(id: string): Promise<Client | undefined> {
    return guarded(async () => {
      const row = await this.row(id);
      return row && toClient(row);
    });
  }

  async findByName(name: string): Promise<Client | undefined> {
    return guarded(async () => {
      const [row] = await this.db.select().from(clients).where(eq(clients.name, name));
      return row && toClient(row);
    });
  }

  async list(): Promise<Client[]> {
    return guarded(async () =>
      (await this.db.select().from(clients).orderBy(asc(clients.name))).map(toClient),
    );
  }

  async upsert(input: ClientInput): Promise<Client> {
    return guarded(() =>
      this.db.transaction(async (tx) => {
        // Two replicas syncing one new config-file client would both find none and both insert: the
        // second waits here, then finds the first's (its id seals the secret, so no blind upsert).
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`client-name:${input.name}`}))`);
        const [existing] = await tx.select().from(clients).where(eq(clients.name, input.name)).for('update');
        const id = existing?.id ?? newId('c');
        const values = clientValues(input, id, this.sealer);
        const [row] = existing
          ? await tx.update(clients).set(values).where(eq(clients.id, id)).returning()
          : await tx
              .insert(clients)
              .values({ ...values, id, name: input.name, createdAt: input.now })
              .returning();
        if (!row) throw new Error('a client write returned no row');
        return toClient(row);
      }),
    );
  }

  async remove(id: string, opts: { withGrants: boolean }): Promise<{ grantLabels: string[] } | undefined> {
    return guarded(() =>
      this.db.transaction(async (tx) => {
        // Locks the client first, so no consent can attach a grant to it meanwhile.
        const [client] = await tx
          .select({ id: clients.id })
          .from(clients)
          .where(eq(clients.id, id))
          .for('update');
        if (!client) return undefined;
        const owned = await tx
          .select({ label: grants.label })
          .from(grants)
          .where(eq(grants.clientRef, id))
          .orderBy(asc(grants.label));
        if (owned.length > 0 && !opts.withGrants) return undefined;
        await tx.delete(grants).where(eq(grants.clientRef, id));
        await tx.delete(clients).where(eq(clients.id, id));
        return { grantLabels: owned.map((g) => g.label) };
      }),
    );
  }

  async rotateSecret(
    id: string,
    next: { secret: string; expiresAt: number | null; now: number },
  ): Promise<Client | undefined> {
    return guarded(() =>
      this.db.transaction(async (tx) => {
        const [row] = await tx.select().from(clients).where(eq(clients.id, id)).for('update');
        const values = row && rotatedSecretValues(row, next, this.sealer);
        if (!values) return undefined;
        const [updated] = await tx.update(clients).set(values).where(eq(clients.id, id)).returning();
        return updated && toClient(updated);
      }),
    );
  }

  async retireSecret(id: string, now: number): Promise<Client | undefined> {
    return guarded(async () => {
      const [row] = await this.db
        .update(clients)
        .set(retiredSecretValues(now))
        .where(and(eq(clients.id, id), isNotNull(clients.previousSecretSealed)))
        .returning();
      return row && toClient(row);
    });
  }

  async recordSecretInUse(id: string, slot: SecretSlot, at: number): Promise<void> {
    // updated_at moves too, so every replica's cached opened client learns it and stops recording.
    await guarded(() =>
      this.db
        .update(clients)
        .set({
          secretInUse: slot,
          secretInUseAt: at,
          updatedAt: sql`greatest(${clients.updatedAt} + 1, ${at})`,
        })
        .where(eq(clients.id, id)),
    );
  }

  private async row(id: string): Promise<ClientRow | undefined> {
    const [row] = await this.db.select().from(clients).where(eq(clients.id, id));
    return row;
  }
}
