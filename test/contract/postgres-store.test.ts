import pg from 'pg';
import { describe } from 'vitest';
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { postgresUnavailable, startPrivatePostgres } from '../support/private-postgres.js';
import { describeStoreContract } from './store-contract.js';

const unavailable = postgresUnavailable();

describe.skipIf(unavailable)('PostgreSQL store', () => {
  describeStoreContract('PostgreSQL', async () => {
    const cluster = await startPrivatePostgres();
    const url = await cluster.createDatabase();
    const database = url.slice(url.lastIndexOf('/') + 1);
    return {
      open: (sealer) => openPostgresStore({ url, sealer, lockTimeoutMs: 300 }),
      dispose: () => cluster.stop(),
      async failEventInserts(grantId) {
        const only = grantId ? `when (new.grant_id = '${grantId}')` : '';
        await cluster.query(
          `create function contract_fail() returns trigger language plpgsql as $$ begin raise exception 'injected'; end $$;
           create trigger contract_fail_events before insert on refresh_events for each row ${only} execute function contract_fail()`,
          database,
        );
        return async () => {
          await cluster.query(
            'drop trigger contract_fail_events on refresh_events; drop function contract_fail()',
            database,
          );
        };
      },
      async storedCodeVerifiers() {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        const { rows } = await client.query<{ code_verifier: string }>(
          'select code_verifier from consent_link_authorizations',
        );
        await client.end();
        return rows.map((r) => r.code_verifier);
      },
      async holdWriteLock() {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        await client.query('begin; lock table grants in exclusive mode');
        return async () => {
          await client.query('rollback');
          await client.end();
        };
      },
    };
  });
});

if (unavailable) describe.skip(`PostgreSQL store: skipped, ${unavailable}`, () => {});
