import { asc, eq, sql } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import { type ClientRow, clients } from '../../db/schema.js';
import type { Sealer } from '../crypto/sealer.js';
import { UserError } from '../errors/user-error.js';
import { type AuthorizeParams, authorizeParamsSchema } from '../oauth/authorize-params.js';
import { type ProviderProfile, parseStoredProfile } from '../oauth/providers.js';
import type { ClientAuthMethod, TokenEndpointTarget } from '../oauth/token-client.js';
import { newId } from './ids.js';

export interface ClientInput {
  name: string;
  profile: ProviderProfile;
  clientId: string;
  clientSecret?: string;
  authMethod: ClientAuthMethod;
  scopes: string[];
  redirectUri?: string;
  /** Extra authorization-request parameters, over the preset's; already checked (authorizeParamsSchema). */
  authorizeParams?: AuthorizeParams;
  now: number;
}

/** A client with its secret opened: only ever held in memory, for a token request. */
export interface OpenedClient {
  id: string;
  name: string;
  profile: ProviderProfile;
  scopes: string[];
  redirectUri?: string;
  authorizeParams: AuthorizeParams;
  target: TokenEndpointTarget;
}

/** The OAuth client repository; client secrets are sealed at rest like tokens. */
export class ClientStore {
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

  /** The opened client for a grant's client id, or undefined when it no longer exists. */
  openById(id: string): OpenedClient | undefined {
    const current = this.updatedAtById.get({ id });
    if (!current) {
      this.opened.delete(id);
      return undefined;
    }
    const cached = this.opened.get(id);
    if (cached?.updatedAt === current.updatedAt) return cached.client;
    const row = this.get(id);
    if (!row) return undefined;
    const client = this.open(row);
    this.opened.set(id, { updatedAt: row.updatedAt, client });
    return client;
  }

  get(id: string): ClientRow | undefined {
    return this.db.select().from(clients).where(eq(clients.id, id)).get();
  }

  findByName(name: string): ClientRow | undefined {
    return this.db.select().from(clients).where(eq(clients.name, name)).get();
  }

  list(): ClientRow[] {
    return this.db.select().from(clients).orderBy(asc(clients.name)).all();
  }

  /** Adds a client, or updates the one with the same name in place (its grants stay attached). */
  upsert(input: ClientInput): ClientRow {
    const existing = this.findByName(input.name);
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
        input.authorizeParams && Object.keys(input.authorizeParams).length > 0 ? input.authorizeParams : null,
      updatedAt: input.now,
    };
    if (existing) {
      return this.db.update(clients).set(values).where(eq(clients.id, id)).returning().get();
    }
    return this.db
      .insert(clients)
      .values({ ...values, id, name: input.name, createdAt: input.now })
      .returning()
      .get();
  }

  /** Deletes a client; the caller removes its grants first (they reference it). */
  remove(id: string): boolean {
    return this.db.delete(clients).where(eq(clients.id, id)).run().changes === 1;
  }

  open(row: ClientRow): OpenedClient {
    const profile = parseStoredProfile(row.profile);
    return {
      id: row.id,
      name: row.name,
      profile,
      scopes: row.scopes.split(' ').filter(Boolean),
      ...(row.redirectUri ? { redirectUri: row.redirectUri } : {}),
      authorizeParams: storedAuthorizeParams(row),
      target: {
        tokenEndpoint: profile.tokenEndpoint,
        clientId: row.clientId,
        authMethod: row.authMethod as ClientAuthMethod,
        ...(row.clientSecretSealed
          ? { clientSecret: this.sealer.open(row.clientSecretSealed, secretContext(row.id)) }
          : {}),
      },
    };
  }
}

/** The column is JSON written by us, but parsed like any input: a damaged one must not reach a URL. */
export function storedAuthorizeParams(row: ClientRow): AuthorizeParams {
  if (row.authorizeParams === null) return {};
  const parsed = authorizeParamsSchema.safeParse(row.authorizeParams);
  if (!parsed.success) throw new UserError(`client ${row.name} has damaged authorization parameters`);
  return parsed.data;
}

export function secretContext(clientId: string): string {
  return `client:${clientId}:secret`;
}
