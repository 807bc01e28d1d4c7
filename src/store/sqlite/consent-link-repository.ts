import { eq, lt } from 'drizzle-orm';
import { consentLinkAuthorizations, consentLinks } from '../../../db/sqlite/schema.js';
import type { Sealer } from '../../crypto/sealer.js';
import type { ConsentLink, ConsentLinkRepository, PendingAuthorization } from '../../grants/ports.js';
import { linkColumns, usableLinkWhere } from '../columns.js';
import { openedAuthorization, sealedAuthorization } from '../rows.js';
import type { Db } from './sqlite-database.js';
import { guarded } from './sqlite-errors.js';

const LINK_FIELDS = linkColumns(consentLinks);

/** Consent links on SQLite: only hashes of their tokens and of their requests' states. */
export class SqliteConsentLinkRepository implements ConsentLinkRepository {
  constructor(
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {}

  async create(link: ConsentLink & { tokenHash: string }): Promise<void> {
    guarded(() => this.db.insert(consentLinks).values(link).run());
  }

  async findByTokenHash(tokenHash: string): Promise<ConsentLink | undefined> {
    return guarded(() =>
      this.db.select(LINK_FIELDS).from(consentLinks).where(eq(consentLinks.tokenHash, tokenHash)).get(),
    );
  }

  async get(id: string): Promise<ConsentLink | undefined> {
    return guarded(() => this.db.select(LINK_FIELDS).from(consentLinks).where(eq(consentLinks.id, id)).get());
  }

  async addAuthorization(pending: PendingAuthorization): Promise<void> {
    guarded(() =>
      this.db.insert(consentLinkAuthorizations).values(sealedAuthorization(pending, this.sealer)).run(),
    );
  }

  async takeAuthorization(stateHash: string, now: number): Promise<PendingAuthorization | undefined> {
    const taken = guarded(() =>
      this.db
        .delete(consentLinkAuthorizations)
        .where(eq(consentLinkAuthorizations.stateHash, stateHash))
        .returning()
        .get(),
    );
    return openedAuthorization(taken, now, this.sealer);
  }

  async markUsed(id: string, now: number): Promise<boolean> {
    return guarded(
      () =>
        this.db
          .update(consentLinks)
          .set({ usedAt: now })
          .where(usableLinkWhere(consentLinks, id, now))
          .run().changes === 1,
    );
  }

  async markUnused(id: string): Promise<void> {
    guarded(() => this.db.update(consentLinks).set({ usedAt: null }).where(eq(consentLinks.id, id)).run());
  }

  async purgeExpired(before: number): Promise<number> {
    return guarded(() =>
      this.db.transaction((tx) => {
        const pending = tx
          .delete(consentLinkAuthorizations)
          .where(lt(consentLinkAuthorizations.expiresAt, before))
          .run().changes;
        return pending + tx.delete(consentLinks).where(lt(consentLinks.expiresAt, before)).run().changes;
      }),
    );
  }
}
