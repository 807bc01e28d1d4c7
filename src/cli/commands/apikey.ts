import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig } from '../../config/load-config.js';
import { UserError } from '../../errors/user-error.js';
import { createLogger } from '../../log/logger.js';
import { type AppContext, openAppContext } from '../../service/app-context.js';
import { ApiKeyStore } from '../../store/api-key-store.js';

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

export function registerApiKeyCommands(program: Command): void {
  const apikey = program.command('apikey').description('manage the bearer keys of the HTTP API');

  apikey
    .command('create')
    .argument('<name>', 'what the key is for (unique)')
    .option('--grants <ids-or-labels>', 'comma-separated grants the key may use (default: all)')
    .description('create a key; it is printed once and stored only as a hash')
    .addHelpText('after', '\nExample:\n  grantkeeper apikey create poster --grants @ourbot,@support')
    .action(async (name: string, opts: { grants?: string }) =>
      withKeys(program, (app, keys) => {
        const parsedName = parse(keyName, name, 'NAME');
        const grantIds =
          opts.grants === undefined
            ? null
            : parse(grantRefs, opts.grants, '--grants').map((ref) => {
                const grant = app.grants.find(ref);
                if (!grant) throw new UserError(`--grants: no grant has the id or label "${ref}"`);
                return grant.id;
              });
        const { key } = keys.create({ name: parsedName, grantIds, now: Date.now() });
        process.stdout.write(`${key}\n`);
        process.stderr.write(
          `API key "${parsedName}" created${grantIds ? ` for ${grantIds.length} grant(s)` : ' for every grant'}; it is shown only this once.\n`,
        );
      }),
    );

  apikey
    .command('list')
    .description('list keys (names, scopes, last use; never the keys)')
    .action(async () =>
      withKeys(program, (_app, keys) => {
        for (const row of keys.list()) {
          const scope = row.grantIds ? row.grantIds.join(',') : 'all grants';
          const used = row.lastUsedAt ? new Date(row.lastUsedAt).toISOString() : 'never used';
          process.stdout.write(`${row.name}\t${scope}\t${used}\n`);
        }
      }),
    );

  apikey
    .command('revoke')
    .argument('<name>', 'the key to delete')
    .description('delete a key; a running API stops accepting it within 30 s')
    .action(async (name: string) =>
      withKeys(program, (_app, keys) => {
        if (!keys.remove(name)) throw new UserError(`no API key is named "${name}"`);
        process.stderr.write(`API key "${name}" revoked\n`);
      }),
    );
}

async function withKeys(program: Command, fn: (app: AppContext, keys: ApiKeyStore) => void): Promise<void> {
  const loaded = loadConfig(process.env, program.opts<{ config?: string }>().config);
  // Logs go to stderr: stdout carries only the key.
  const app = await openAppContext(loaded, createLogger({ level: 'warn', destination: process.stderr }));
  try {
    fn(app, new ApiKeyStore(app.store.db));
  } finally {
    app.close();
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new UserError(`${what}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}
