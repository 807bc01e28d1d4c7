import { Command, CommanderError } from 'commander';
import { packageVersion } from '../util/package-root.js';
import { registerApiKeyCommands } from './commands/apikey.js';
import { registerClientCommands } from './commands/client.js';
import { registerGrantListCommands } from './commands/grants.js';
import { registerHealthcheckCommand } from './commands/healthcheck.js';
import { registerLinkCommand } from './commands/link.js';
import { registerMigrateStoreCommand } from './commands/migrate-store.js';
import { registerQueueCommands } from './commands/queue.js';
import { registerRekeyCommand } from './commands/rekey.js';
import { registerRevokeCommands } from './commands/revoke.js';
import { registerRunCommand } from './commands/run.js';
import { registerSeedCommand } from './commands/seed.js';
import { registerServeCommand } from './commands/serve.js';
import { registerStatusCommand } from './commands/status.js';
import { registerTokenCommands } from './commands/token.js';
import { isForPeople } from './user-error.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command('grantkeeper')
    .description(
      'Keeps OAuth 2.0 grants alive: sealed tokens in SQLite, refreshed ahead of expiry by a BullMQ worker.',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--config <path>', 'JSON config file (also GRANTKEEPER_CONFIG)')
    .option('--verbose', 'show stack traces on errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerRunCommand(program);
  registerServeCommand(program);
  registerClientCommands(program);
  registerSeedCommand(program);
  registerLinkCommand(program);
  registerGrantListCommands(program);
  registerTokenCommands(program);
  registerRevokeCommands(program);
  registerStatusCommand(program);
  registerQueueCommands(program);
  registerApiKeyCommands(program);
  registerRekeyCommand(program);
  registerMigrateStoreCommand(program);
  registerHealthcheckCommand(program);
  program.addHelpText(
    'after',
    '\nExample:\n  grantkeeper client add x --provider x --client-id ABC --client-secret-env X_SECRET\n' +
      '  grantkeeper seed x --label @ourbot && grantkeeper run\n\n' +
      'Exit codes: 0 ok, 1 failure, 2 usage error.',
  );
  return program;
}

/**
 * The CLI entry: one clear line and a non-zero exit for anything that goes wrong; the stack trace
 * only with --verbose.
 */
export async function main(argv: string[]): Promise<void> {
  // `grantkeeper grants | head -1`: the reader left, nothing more to say to it.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
    throw err;
  });
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = reportError(err, argv.includes('--verbose'));
  }
}

function reportError(err: unknown, verbose: boolean): number {
  if (err instanceof CommanderError) {
    // Commander already printed usage or help; only the exit code is ours to set.
    return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  }
  const message = err instanceof Error ? err.message : String(err);
  // Both say what is wrong for the operator; anything else is a bug, worth --verbose.
  const expected = isForPeople(err);
  if (expected) {
    process.stderr.write(`grantkeeper: ${message}\n`);
  } else {
    process.stderr.write(`grantkeeper: unexpected error: ${message} (run with --verbose for details)\n`);
  }
  if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return expected ? err.exitCode : EXIT_FAILURE;
}
