import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { README_PATH, renderConfigTables, withConfigTables } from '../../scripts/config-docs.js';

describe('the README configuration tables', () => {
  it('are what the config schema renders (npm run docs:config writes them)', () => {
    const readme = readFileSync(README_PATH, 'utf8');
    expect(withConfigTables(readme)).toBe(readme);
  });

  it('name every setting and every secret variable', () => {
    const tables = renderConfigTables();
    for (const name of ['GRANTKEEPER_CONCURRENCY', 'refreshTiming.leadFraction', 'GRANTKEEPER_KEY_COMMAND']) {
      expect(tables).toContain(`\`${name}\``);
    }
  });
});
