import { eq, lt } from 'drizzle-orm';
import { consentLinkAuthorizations, consentLinks } from '../../../db/postgres/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import type { ConsentLink, ConsentLinkRepository, PendingAuthorization } from '../../grants/ports.js';
import { linkColumns, usableLinkWhere } from '../columns.js';
import { openedAuthorization, sealedAuthorization } from '../rows.js';
import type { PgDb } from './postgres-database.js';
import { guarded } from './postgres-errors.js';

const LINK_FIELDS = linkColumns(consentLinks);

/** Consent links on PostgreSQL: only hashes of their tokens and of their requests' states. */
export class PostgresConsentLinkRepository implements ConsentLinkRepository {
  constructor(
    private readonly db: PgDb,
    private readonly sealer: Sealer,
  ) {}

  async create(link: ConsentLink & { tokenHash: string }): Promise<void> {
    await guarded(() => this.db.insert(consentLinks).values(link));
  }

  async findByTokenHash(tokenHash: string): Promise<ConsentLink | undefined> {
    return guarded(async () => {
      const [row] = await this.db
        .select(LINK_FIELDS)
        .from(consentLinks)
        .where(eq(consentLinks.tokenHash, tokenHash));
      return row;
    });
  }

  async get(id: string): Promise<ConsentLink | undefined> {
    return guarded(async () => {
      const [row] = await this.db.select(LINK_FIELDS).from(consentLinks).where(eq(consentLinks.id, id));
      return row;
    });
  }

  async addAuthorization(pending: PendingAuthorization): Promise<void> {
    await guarded(() =>
      this.db.insert(consentLinkAuthorizations).values(sealedAuthorization(pending, this.sealer)),
    );
  }

  async takeAuthorization(stateHash: string, now: number): Promise<PendingAuthorization | undefined> {
    const [taken] = await guarded(() =>
      this.db
        .delete(consentLinkAuthorizations)
        .where(eq(consentLinkAuthorizations.stateHash, stateHash))
        .returning(),
    );
    return openedAuthorization(taken, now, this.sealer);
  }

  async markUsed(id: string, now: number): Promise<boolean> {
    return guarded(
      async () =>
        (
          await this.db
            .update(consentLinks)
            .set({ usedAt: now })
            .where(usableLinkWhere(consentLinks, id, now))
        ).rowCount === 1,
    );
  }

  async markUnused(id: string): Promise<void> {
    await guarded(() => this.db.update(consentLinks).set({ usedAt: null }).where(eq(consentLinks.id, id)));
  }

  async purgeExpired(before: number): Promise<number> {
    return guarded(() =>
      this.db.transaction(async (tx) => {
        const pending = await tx
          .delete(consentLinkAuthorizations)
          .where(lt(consentLinkAuthorizations.expiresAt, before));
        const links = await tx.delete(consentLinks).where(lt(consentLinks.expiresAt, before));
        return (pending.rowCount ?? 0) + (links.rowCount ?? 0);
      }),
    );
  }
}
