import { asc, eq, sql } from 'drizzle-orm';
import { type ClientRow, clients, grants } from '../../../db/sqlite/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import { UserError } from '../../errors/user-error.js';
import type { Client, ClientInput, ClientRepository, OpenedClient } from '../../grants/ports.js';
import { type AuthorizeParams, authorizeParamsSchema } from '../../oauth/authorize-params.js';
import { parseStoredProfile } from '../../oauth/providers.js';
import type { ClientAuthMethod } from '../../oauth/token-client.js';
import { newId } from '../ids.js';
import { secretContext } from '../seal-contexts.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

const AUTH_METHODS: readonly ClientAuthMethod[] = ['client_secret_basic', 'client_secret_post', 'none'];

/** OAuth clients on SQLite; client secrets are sealed at rest like tokens. */
export class SqliteClientRepository implements ClientRepository {
  /** Opened clients by id, valid while the row's updated_at is unchanged: a refresh opens its client
   * with one cheap lookup instead of a full read, JSON parse and unseal. */
  private readonly opened = new Map<string, { updatedAt: number; client: OpenedClient }>();
  private readonly updatedAtById;

  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {
    this.updatedAtById = db
      .select({ updatedAt: clients.updatedAt })
      .from(clients)
      .where(eq(clients.id, sql.placeholder('id')))
      .prepare();
  }

  async openById(id: string): Promise<OpenedClient | undefined> {
    return guarded(() => {
      const current = this.updatedAtById.get({ id });
      if (!current) {
        this.opened.delete(id);
        return undefined;
      }
      const cached = this.opened.get(id);
      if (cached?.updatedAt === current.updatedAt) return cached.client;
      const row = this.row(id);
      if (!row) return undefined;
      const client = this.open(row);
      this.opened.set(id, { updatedAt: row.updatedAt, client });
      return client;
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
    return guarded(() => {
      const existing = this.db.select().from(clients).where(eq(clients.name, input.name)).get();
      const id = existing?.id ?? newId('c');
      const values = {
        provider: input.profile.kind,
        profile: input.profile,
        clientId: input.clientId,
        clientSecretSealed:
          input.clientSecret === undefined ? null : this.sealer.seal(input.clientSecret, secretContext(id)),
        authMethod: input.authMethod,
        scopes: input.scopes.join(' '),
        redirectUri: input.redirectUri ?? null,
        authorizeParams:
          input.authorizeParams && Object.keys(input.authorizeParams).length > 0
            ? input.authorizeParams
            : null,
        updatedAt: input.now,
      };
      const row = existing
        ? this.db.update(clients).set(values).where(eq(clients.id, id)).returning().get()
        : this.db
            .insert(clients)
            .values({ ...values, id, name: input.name, createdAt: input.now })
            .returning()
            .get();
      return toClient(row);
    });
  }

  async remove(id: string, opts: { withGrants: boolean }): Promise<{ grantLabels: string[] } | undefined> {
    return guarded(() =>
      this.db.transaction((tx) => {
        const owned = tx.select({ label: grants.label }).from(grants).where(eq(grants.clientRef, id)).all();
        if (owned.length > 0 && !opts.withGrants) return undefined;
        tx.delete(grants).where(eq(grants.clientRef, id)).run();
        const removed = tx.delete(clients).where(eq(clients.id, id)).run().changes === 1;
        return removed ? { grantLabels: owned.map((g) => g.label) } : undefined;
      }),
    );
  }

  private row(id: string): ClientRow | undefined {
    return this.db.select().from(clients).where(eq(clients.id, id)).get();
  }

  private open(row: ClientRow): OpenedClient {
    const client = toClient(row);
    return {
      id: client.id,
      name: client.name,
      profile: client.profile,
      scopes: client.scopes,
      ...(client.redirectUri ? { redirectUri: client.redirectUri } : {}),
      authorizeParams: client.authorizeParams,
      target: {
        tokenEndpoint: client.profile.tokenEndpoint,
        clientId: client.clientId,
        authMethod: client.authMethod,
        ...(row.clientSecretSealed
          ? { clientSecret: this.sealer.open(row.clientSecretSealed, secretContext(row.id)) }
          : {}),
      },
    };
  }
}

/** The row as the domain sees it: JSON and text columns parsed like any input, never the secret. */
function toClient(row: ClientRow): Client {
  if (!AUTH_METHODS.includes(row.authMethod as ClientAuthMethod)) {
    throw new UserError(`client ${row.name} has an unknown authentication method`);
  }
  return {
    id: row.id,
    name: row.name,
    profile: parseStoredProfile(row.profile),
    clientId: row.clientId,
    authMethod: row.authMethod as ClientAuthMethod,
    hasSecret: row.clientSecretSealed !== null,
    scopes: row.scopes.split(' ').filter(Boolean),
    redirectUri: row.redirectUri,
    authorizeParams: storedAuthorizeParams(row.name, row.authorizeParams),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/** The column is JSON written by us, but parsed like any input: a damaged one must not reach a URL. */
function storedAuthorizeParams(name: string, value: unknown): AuthorizeParams {
  if (value === null || value === undefined) return {};
  const parsed = authorizeParamsSchema.safeParse(value);
  if (!parsed.success) throw new UserError(`client ${name} has damaged authorization parameters`);
  return parsed.data;
}
