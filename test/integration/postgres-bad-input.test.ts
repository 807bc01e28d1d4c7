import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring, keyIdFor, Sealer } from '../../src/crypto/sealer.js';
import { findFreePort } from '../../src/redis/managed-redis.js';
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js';
import { runCli } from '../support/cli.js';
import { removeDir, tempDataDir } from '../support/engine.js';
import {
  type PrivatePostgres,
  postgresUnavailable,
  startPrivatePostgres,
} from '../support/private-postgres.js';

const unavailable = postgresUnavailable();
const newKey = () => randomBytes(32).toString('base64');

/** One line on stderr, no stack trace, a non-zero exit. */
function expectOneClearLine(result: { code: number | null; stderr: string }, pattern: RegExp) {
  expect(result.code).not.toBe(0);
  const lines = result.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^grantkeeper: /);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

describe.skipIf(unavailable)(
  'a PostgreSQL store: bad input exits with one clear line, nothing written',
  () => {
    let postgres: PrivatePostgres;
    const dirs: string[] = [];
    const dataDir = () => {
      const dir = tempDataDir();
      dirs.push(dir);
      return dir;
    };
    // `client add` creates a store; `grants` only reads one.
    const addClient = (env: Record<string, string>) =>
      runCli(['client', 'add', 'bot', '--provider', 'x', '--client-id', 'abc'], {
        GRANTKEEPER_DATA_DIR: dataDir(),
        ...env,
      });
    const tables = async (url: string) =>
      (
        await postgres.query(
          `select count(*)::int as n from information_schema.tables where table_schema = 'public'`,
          url.slice(url.lastIndexOf('/') + 1),
        )
      ).rows[0]?.n as number;

    beforeAll(async () => {
      postgres = await startPrivatePostgres();
    }, 60_000);

    afterAll(async () => {
      await postgres?.stop();
      for (const dir of dirs) removeDir(dir);
    });

    it('a malformed URL names the variable and never echoes its password', async () => {
      const result = await addClient({
        GRANTKEEPER_DATABASE_URL: 'postgres://bot:hunter2-secret@/nohost',
        GRANTKEEPER_KEY: newKey(),
      });
      expectOneClearLine(result, /GRANTKEEPER_DATABASE_URL: expected a postgres:\/\//);
      expect(result.stderr + result.stdout).not.toContain('hunter2-secret');
    });

    it('an unreachable server says so, without the password', async () => {
      const port = await findFreePort('127.0.0.1');
      const result = await addClient({
        GRANTKEEPER_DATABASE_URL: `postgres://bot:hunter2-secret@127.0.0.1:${port}/gk`,
        GRANTKEEPER_KEY: newKey(),
      });
      expectOneClearLine(
        result,
        /cannot reach PostgreSQL at postgres:\/\/bot@127\.0\.0\.1:\d+\/gk \(ECONNREFUSED\)/,
      );
      expect(result.stderr).not.toContain('hunter2-secret');
    });

    it('without a given key it refuses to generate one on this machine', async () => {
      const url = await postgres.createDatabase();
      const result = await addClient({ GRANTKEEPER_DATABASE_URL: url });
      expectOneClearLine(
        result,
        /sealing key must be given.*GRANTKEEPER_KEY, GRANTKEEPER_KEY_FILE or GRANTKEEPER_KEY_COMMAND/,
      );
      expect(await tables(url)).toBe(0);
    });

    it('a read-only server is refused before anything is written', async () => {
      const url = await postgres.createDatabase();
      const name = url.slice(url.lastIndexOf('/') + 1);
      await postgres.query(`alter database ${name} set default_transaction_read_only = on`);
      const result = await addClient({ GRANTKEEPER_DATABASE_URL: url, GRANTKEEPER_KEY: newKey() });
      expectOneClearLine(
        result,
        /accepts no writes \(read-only transactions\): point GRANTKEEPER_DATABASE_URL at the primary/,
      );
      expect(await tables(url)).toBe(0);
    });

    it('a read-only tool on an empty database does not create a store there', async () => {
      const url = await postgres.createDatabase();
      const result = await runCli(['grants'], {
        GRANTKEEPER_DATA_DIR: dataDir(),
        GRANTKEEPER_DATABASE_URL: url,
        GRANTKEEPER_KEY: newKey(),
      });
      expectOneClearLine(result, /no grantkeeper store in postgres:\/\/postgres@127\.0\.0\.1/);
      expect(await tables(url)).toBe(0);
    });

    it('a replica with another sealing key cannot write, and is told both key ids', async () => {
      const url = await postgres.createDatabase();
      const first = newKey();
      expect((await addClient({ GRANTKEEPER_DATABASE_URL: url, GRANTKEEPER_KEY: first })).code).toBe(0);
      const other = newKey();
      const result = await addClient({ GRANTKEEPER_DATABASE_URL: url, GRANTKEEPER_KEY: other });
      const otherId = keyIdFor(Buffer.from(other, 'base64'));
      expectOneClearLine(result, new RegExp(otherId));
      // The same command with the right key from a key command works: one store, several replicas.
      const viaCommand = await addClient({
        GRANTKEEPER_DATABASE_URL: url,
        GRANTKEEPER_KEY_COMMAND: `printf '%s' '${first}'`,
      });
      expect(viaCommand.code).toBe(0);
    });

    it('a schema written by a newer grantkeeper is refused', async () => {
      const url = await postgres.createDatabase();
      const key = newKey();
      expect((await addClient({ GRANTKEEPER_DATABASE_URL: url, GRANTKEEPER_KEY: key })).code).toBe(0);
      const name = url.slice(url.lastIndexOf('/') + 1);
      await postgres.query(
        `insert into drizzle.__drizzle_migrations (hash, created_at) values ('from-the-future', ${Date.parse('2099-01-01')})`,
        name,
      );
      const result = await addClient({ GRANTKEEPER_DATABASE_URL: url, GRANTKEEPER_KEY: key });
      expectOneClearLine(result, /schema from a newer grantkeeper.*upgrade this replica/);
    });

    it('migrate-store refused by the target mid-copy is one line, never the statement or its sealed values', async () => {
      const sqliteDir = dataDir();
      const key = newKey();
      const added = await runCli(
        [
          'client',
          'add',
          'bot',
          '--provider',
          'x',
          '--client-id',
          'abc',
          '--client-secret-env',
          'BOT_SECRET',
        ],
        { GRANTKEEPER_DATA_DIR: sqliteDir, GRANTKEEPER_KEY: key, BOT_SECRET: 'bot-client-secret' },
      );
      expect(added.code).toBe(0);
      const url = await postgres.createDatabase();
      const name = url.slice(url.lastIndexOf('/') + 1);
      // The target's tables exist and are empty; the server then refuses the first row copied.
      const sealer = new Sealer(
        new Keyring({ id: keyIdFor(Buffer.from(key, 'base64')), key: Buffer.from(key, 'base64') }),
      );
      await (await openPostgresStore({ url, sealer })).admin.close();
      await postgres.query(
        `create function refuse() returns trigger language plpgsql as $$ begin raise exception 'no more clients here'; end $$;
       create trigger refuse_clients before insert on clients for each row execute function refuse()`,
        name,
      );
      const result = await runCli(['migrate-store'], {
        GRANTKEEPER_DATA_DIR: sqliteDir,
        GRANTKEEPER_KEY: key,
        GRANTKEEPER_DATABASE_URL: url,
      });
      expectOneClearLine(result, /no more clients here/);
      expect(result.stderr).not.toMatch(/Failed query|params:|insert into|bot-client-secret/i);
      // Nothing was marked moved: the SQLite store still opens.
      expect((await runCli(['grants'], { GRANTKEEPER_DATA_DIR: sqliteDir, GRANTKEEPER_KEY: key })).code).toBe(
        0,
      );
    });

    it('a key command that fails is reported by its status, not its output', async () => {
      const url = await postgres.createDatabase();
      const result = await addClient({
        GRANTKEEPER_DATABASE_URL: url,
        GRANTKEEPER_KEY_COMMAND: 'echo vault-token-s3cret >&2; exit 3',
      });
      expectOneClearLine(result, /GRANTKEEPER_KEY_COMMAND exited with status 3/);
      expect(result.stderr).not.toContain('vault-token-s3cret');
    });
  },
);

if (unavailable) describe.skip(`PostgreSQL bad input: skipped, ${unavailable}`, () => {});
