import Fastify, { type FastifyBaseLogger } from 'fastify';
import { describe, expect, it } from 'vitest';
import { answerError } from '../../src/api/errors.js';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import { createLogger } from '../../src/log/logger.js';

/** The API's error handler on a bare server whose log lines are kept. */
async function answering(error: Error) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  const server = Fastify({ loggerInstance: logger as FastifyBaseLogger, disableRequestLogging: true });
  server.setErrorHandler(answerError);
  server.get('/fails', async () => {
    throw error;
  });
  const res = await server.inject({ method: 'GET', url: '/fails' });
  await server.close();
  return {
    status: res.statusCode,
    body: res.json() as { error: string },
    logged: lines.filter((l) => l.level === 50),
  };
}

describe('the API error handler', () => {
  it('logs a server-side failure with its code, not only a bug', async () => {
    const damaged = await answering(
      new GrantkeeperError('damaged_record', 'client x has a damaged provider profile'),
    );
    expect(damaged.status).toBe(500);
    expect(damaged.body.error).toBe('damaged_record');
    expect(damaged.logged).toHaveLength(1);
    expect(damaged.logged[0]).toMatchObject({ errorCode: 'damaged_record', route: '/fails' });
  });

  it('does not log refusals of the caller, or the retry signals logged where they arose', async () => {
    for (const error of [
      new GrantkeeperError('not_found', 'no grant has that id or label'),
      new GrantkeeperError('unavailable', 'the grant is being refreshed by another process; try again'),
      new GrantkeeperError('storage_unavailable', 'the disk is full'),
    ]) {
      expect((await answering(error)).logged).toEqual([]);
    }
  });

  it('logs a bug as internal without its details in the answer', async () => {
    const bug = await answering(new TypeError('x is undefined'));
    expect(bug.body).toEqual({ error: 'internal', message: 'internal error' });
    expect(bug.logged).toHaveLength(1);
  });
});
