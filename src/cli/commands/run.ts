import type { Command } from 'commander';
import { loadConfig } from '../../config/load-config.js';
import { createLogger } from '../../log/logger.js';
import { startGrantkeeper } from '../../service/grantkeeper-service.js';
import { TIMED_OUT, withTimeout } from '../../util/with-timeout.js';

export function registerRunCommand(program: Command): void {
  program
    .command('run')
    .description(
      'run the service: migrations, reconciler, refresh and alert workers, and the HTTP API, until SIGINT/SIGTERM',
    )
    .addHelpText(
      'after',
      '\nExample:\n  REDIS_URL=redis://127.0.0.1:6379 grantkeeper run\n' +
        '  grantkeeper run   # starts its own password-protected redis-server in the data folder, one per folder\n\n' +
        'Exits 1 when its redis-server keeps dying (more than 3 restarts within a minute), so a supervisor restarts it.',
    )
    .action(() => runUntilSignal(program, { runWorker: true }));
}

/**
 * `run` and `serve`: start the composition, wait for a signal (or for the loss of the Redis the
 * service cannot go on without), stop within the grace period.
 */
export async function runUntilSignal(program: Command, options: { runWorker: boolean }): Promise<void> {
  const globals = program.opts<{ config?: string }>();
  const loaded = loadConfig(process.env, globals.config);
  const logger = createLogger({ level: loaded.config.logLevel });
  // Listen before starting: the worker takes jobs before the API listens, and a SIGTERM in that
  // window used to kill the process outright (default action) with refreshes in flight; now it
  // stops it gracefully as soon as it is up.
  const signalled = waitForShutdownSignal();
  const keeper = await startGrantkeeper(loaded, logger, options);
  const lost = await Promise.race([signalled.then(() => undefined), keeper.service.redisGone]);
  if (lost) {
    // Exit non-zero so a supervisor (systemd, Docker's restart policy) starts the service afresh.
    logger.error(`${lost.message}: stopping so that a supervisor restarts grantkeeper`);
    process.exitCode = 1;
  }
  logger.info(options.runWorker ? 'shutting down: letting running refreshes commit' : 'shutting down');
  const graceMs = loaded.config.shutdownGraceSeconds * 1000;
  if ((await withTimeout(keeper.stop(), graceMs)) === TIMED_OUT) {
    // Refreshes still waiting on the provider keep their lease and version: the next start retries
    // them safely. Tokens received but refused by the database are lost with the process.
    const unstored = keeper.service.engine.refresher.heldGrantIds();
    if (unstored.length > 0) {
      logger.error(
        { graceMs, grantIds: unstored },
        'shutdown grace period exceeded while the database refused new tokens: these grants may need a new consent (grantkeeper seed)',
      );
    } else {
      logger.error({ graceMs }, 'shutdown grace period exceeded; exiting with refreshes still running');
    }
    process.exit(1);
  }
  logger.info('stopped');
}

function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
