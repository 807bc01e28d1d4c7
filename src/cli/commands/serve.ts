import type { Command } from 'commander';
import { runUntilSignal } from './run.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'run the HTTP API alone (tokens, metrics, dashboard) beside a `grantkeeper run` elsewhere, until SIGINT/SIGTERM; ' +
        'without REDIS_URL it uses the managed redis-server of that run (waiting up to 30 s for it) and never starts one',
    )
    .addHelpText('after', '\nExample:\n  GRANTKEEPER_API_PORT=7421 grantkeeper serve')
    .action(() => runUntilSignal(program, { runWorker: false }));
}
