import { describe, expect, it } from 'vitest';
import { createLogger, unredacted } from '../../src/log/logger.js';

describe('logger', () => {
  const capture = () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({
      level: 'info',
      destination: { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
    });
    return { logger, lines };
  };

  it('censors secret fields wherever they sit', () => {
    const { logger, lines } = capture();
    logger.info({ refreshToken: 'rt', err: { detail: { access_token: 'at' } } }, 'x');
    expect(lines[0]).toMatchObject({
      refreshToken: '[redacted]',
      err: { detail: { access_token: '[redacted]' } },
    });
  });

  it('writes the audit line without the redaction pass, to the same place with the same bindings', () => {
    const { logger, lines } = capture();
    const audit = unredacted(logger.child({ component: 'worker' }));
    audit.info({ grantId: 'g_1', version: 2 }, 'grant refreshed');
    audit.debug({ grantId: 'g_1' }, 'below the level');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      service: 'grantkeeper',
      component: 'worker',
      grantId: 'g_1',
      version: 2,
      msg: 'grant refreshed',
    });
    // The parent keeps censoring.
    logger.info({ key: 'k' }, 'y');
    expect(lines[1]?.key).toBe('[redacted]');
  });
});
