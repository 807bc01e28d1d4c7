import { type Command, Option } from 'commander';
import { z } from 'zod';
import { issueApiKey } from '../../api/auth/api-keys.js';
import { loadConfig } from '../../config/load-config.js';
import type { ApiKey, ApiKeyAccess } from '../../grants/ports.js';
import { createLogger } from '../../log/logger.js';
import { openStoreContext, type StoreContext } from '../../service/store-context.js';
import { printJson, printLine, renderTable } from '../output.js';
import { UserError } from '../user-error.js';

const keyName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'letters, digits, ".", "_", "@" or "-", at most 64');
const grantRefs = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string().min(1).max(200)).min(1, 'name at least one grant'));

const NO_ROLE =
  'say what the key may do: --admin (every grant, the write routes and the queue dashboard) or ' +
  '--grants a,b (read only those grants’ tokens and views)';

export function registerApiKeyCommands(program: Command): void {
  const apikey = program.command('apikey').description('manage the bearer keys of the HTTP API');

  apikey
    .command('create')
    .argument('<name>', 'what the key is for (unique)')
    .addOption(
      new Option(
        '--grants <ids-or-labels>',
        'a reader of these grants (comma-separated): tokens and views only',
      ),
    )
    .addOption(
      new Option('--admin', 'an admin key: every grant, the write routes and the queue dashboard').conflicts(
        'grants',
      ),
    )
    .description(
      'create a key (--admin or --grants, one of them); it is printed once and stored only as a hash',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  grantkeeper apikey create poster --grants @ourbot,@support\n  grantkeeper apikey create ops --admin',
    )
    .action(async (name: string, opts: { grants?: string; admin?: boolean }) => {
      const parsedName = parse(keyName, name, 'NAME');
      // Least privilege is never implicit: a key without a role is a usage error, not an admin.
      if (!opts.admin && opts.grants === undefined) throw new UserError(NO_ROLE, 2);
      const grantRefList = opts.grants === undefined ? undefined : parse(grantRefs, opts.grants, '--grants');
      await withApp(program, async (app) => {
        const access: ApiKeyAccess = grantRefList
          ? { role: 'reader', grantIds: await Promise.all(grantRefList.map((ref) => grantIdOf(app, ref))) }
          : { role: 'admin' };
        const { key } = await issueApiKey(app.apiKeys, { name: parsedName, ...access, now: Date.now() });
        process.stdout.write(`${key}\n`);
        process.stderr.write(
          `API key "${parsedName}" created: ${access.role === 'admin' ? 'an admin key' : `a reader of ${access.grantIds.length} grant(s)`}; it is shown only this once.\n`,
        );
      });
    });

  apikey
    .command('list')
    .description('list keys (names, roles, grants, last use; never the keys)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) =>
      withApp(program, async (app) => {
        const rows = await app.apiKeys.list();
        const labels = await grantLabels(app, rows);
        const label = (id: string) => labels.get(id) ?? null;
        if (opts.json) {
          return printJson(
            rows.map((row) => ({
              name: row.name,
              role: row.role,
              grants: grantsOf(row)?.map((id) => ({ id, label: label(id) })) ?? null,
              created_at: new Date(row.createdAt).toISOString(),
              last_used_at: row.lastUsedAt ? new Date(row.lastUsedAt).toISOString() : null,
            })),
          );
        }
        if (rows.length === 0)
          return printLine('no API keys (grantkeeper apikey create NAME --admin | --grants …)');
        printLine(
          renderTable(
            ['name', 'role', 'grants', 'created', 'last used'],
            rows.map((row) => [
              row.name,
              row.role,
              grantsOf(row)
                ?.map((id) => label(id) ?? `${id} (removed)`)
                .join(', ') ?? 'all',
              new Date(row.createdAt).toISOString(),
              row.lastUsedAt ? new Date(row.lastUsedAt).toISOString() : 'never',
            ]),
          ),
        );
      }),
    );

  apikey
    .command('revoke')
    .argument('<name>', 'the key to delete')
    .description('delete a key: its browser sessions end at once, a running API drops the key within 30 s')
    .action(async (name: string) =>
      withApp(program, async (app) => {
        if (!(await app.apiKeys.remove(name))) throw new UserError(`no API key is named "${name}"`);
        process.stderr.write(`API key "${name}" revoked\n`);
      }),
    );
}

/** The grants a key reads; null for an admin key (every grant). */
function grantsOf(key: ApiKey): string[] | null {
  return key.role === 'admin' ? null : (key.grantIds ?? []);
}

async function grantIdOf(app: StoreContext, ref: string): Promise<string> {
  const stored = await app.grants.find(ref);
  if (!stored) throw new UserError(`--grants: no grant has the id or label "${ref}"`);
  return stored.grant.id;
}

/** The labels of the grants the keys name, looked up once each. */
async function grantLabels(app: StoreContext, keys: ApiKey[]): Promise<Map<string, string>> {
  const ids = new Set(keys.flatMap((k) => grantsOf(k) ?? []));
  const labels = new Map<string, string>();
  for (const id of ids) {
    const stored = await app.grants.get(id);
    if (stored) labels.set(id, stored.grant.label);
  }
  return labels;
}

async function withApp(program: Command, fn: (app: StoreContext) => Promise<void>): Promise<void> {
  const loaded = loadConfig(process.env, program.opts<{ config?: string }>().config);
  // Logs go to stderr: stdout carries only the key.
  const app = await openStoreContext(loaded, createLogger({ level: 'warn', destination: process.stderr }), {
    create: false,
  });
  try {
    await fn(app);
  } finally {
    await app.close();
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new UserError(`${what}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}
