import { Argument, type Command } from 'commander';
import { ALERT_QUEUE_NAME, createAlertQueue } from '../../../jobs/alert-queue.js';
import { REFRESH_QUEUE_NAME } from '../../../jobs/refresh-queue.js';
import { withCliContext } from '../cli-context.js';
import { colors, examples, printJson, printLine } from '../output.js';
import { UserError } from '../user-error.js';

const QUEUES = [REFRESH_QUEUE_NAME, ALERT_QUEUE_NAME] as const;
type QueueName = (typeof QUEUES)[number];

/** `grantkeeper queue pause|resume`: what the dashboard's buttons do, for an operator at a shell. */
export function registerQueueCommands(program: Command): void {
  const queue = program
    .command('queue')
    .description('pause or resume a queue in Redis (as the dashboard does); a pause outlives restarts')
    .addHelpText('after', examples('grantkeeper queue pause', 'grantkeeper queue resume'));

  for (const action of ['pause', 'resume'] as const) {
    queue
      .command(action)
      .description(
        action === 'pause'
          ? 'pause a queue: none of its jobs run (no refresh, or no alert delivery) until it is resumed'
          : 'resume a paused queue: its waiting and due jobs run again',
      )
      .addArgument(new Argument('[queue]', 'which queue').choices(QUEUES).default(REFRESH_QUEUE_NAME))
      .option('--json', 'print JSON')
      .addHelpText('after', examples(`grantkeeper queue ${action}`, `grantkeeper queue ${action} alerts`))
      .action(async (name: QueueName, opts: { json?: boolean }) => {
        await withCliContext(program, async ({ loaded, engine, redis, connection }) => {
          if (!connection || !engine.queue) {
            throw new UserError(
              `cannot ${action} the ${name} queue: ${
                redis.state === 'unreachable'
                  ? redis.error
                  : 'Redis is not running (start grantkeeper run, or set REDIS_URL)'
              }`,
            );
          }
          const target =
            name === REFRESH_QUEUE_NAME
              ? engine.queue
              : createAlertQueue(connection, loaded.config.queuePrefix);
          try {
            if (action === 'pause') await target.pause();
            else await target.resume();
            const paused = await target.isPaused();
            if (opts.json) return printJson({ queue: name, paused });
            printLine(
              paused
                ? colors.yellow(
                    `the ${name} queue is paused: none of its jobs run until grantkeeper queue resume${name === REFRESH_QUEUE_NAME ? '' : ` ${name}`}`,
                  )
                : colors.green(`the ${name} queue is running`),
            );
          } finally {
            if (target !== engine.queue) await target.close();
          }
        });
      });
  }
}
