import type { Command } from 'commander';
import { request } from 'undici';
import { z } from 'zod';
import { loadConfig } from '../../config/load-config.js';
import { examples, printLine } from '../output.js';
import { wholeNumberArg } from '../parsers.js';
import { UserError } from '../user-error.js';

const readyBody = z.object({
  status: z.string(),
  checks: z.record(z.string(), z.string()).optional(),
});

/**
 * The address to probe: the configured API address, with a wildcard bind (a container's 0.0.0.0)
 * reached over loopback, which every wildcard bind also answers on.
 */
export function probeUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}/readyz`;
}

/**
 * `grantkeeper healthcheck`: asks the running service's /readyz, so a container's HEALTHCHECK needs
 * node only (no curl in the image) and reads the same GRANTKEEPER_API_HOST / _PORT as the service.
 * It opens neither the store nor Redis: a probe must never take the store's write lock.
 */
export function registerHealthcheckCommand(program: Command): void {
  program
    .command('healthcheck')
    .description(
      'exit 0 when the service on this machine answers ready on /readyz (db, Redis, worker, queue not paused), 1 otherwise',
    )
    .option('--timeout <ms>', 'give up after this many milliseconds', wholeNumberArg(100, 60_000), 3000)
    .addHelpText(
      'after',
      examples(
        'grantkeeper healthcheck && echo ready',
        'HEALTHCHECK CMD ["grantkeeper", "healthcheck"]   # in a Dockerfile',
      ),
    )
    .action(async (opts: { timeout: number }) => {
      const { config } = loadConfig(process.env, program.opts<{ config?: string }>().config);
      if (config.apiPort === 0) {
        throw new UserError(
          'GRANTKEEPER_API_PORT is 0 (a random port): the healthcheck cannot know where the API listens',
          2,
        );
      }
      const url = probeUrl(config.apiHost, config.apiPort);
      let answer: { statusCode: number; body: z.infer<typeof readyBody> | undefined };
      try {
        const res = await request(url, { signal: AbortSignal.timeout(opts.timeout) });
        const parsed = readyBody.safeParse(await res.body.json().catch(() => undefined));
        answer = { statusCode: res.statusCode, body: parsed.success ? parsed.data : undefined };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name;
        throw new UserError(`not ready: no answer from ${url} (${code})`, 1);
      }
      const failing = Object.entries(answer.body?.checks ?? {})
        .filter(([, result]) => result !== 'ok' && result !== 'not_started')
        .map(([check, result]) => `${check} ${result}`);
      if (answer.statusCode !== 200) {
        throw new UserError(
          `not ready: ${url} answered ${answer.statusCode}${failing.length ? ` (${failing.join(', ')})` : ''}`,
          1,
        );
      }
      printLine(`ready${failing.length ? ` (${failing.join(', ')})` : ''}`);
    });
}
