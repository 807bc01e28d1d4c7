import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  README_PATH,
  renderConfigTables,
  renderErrorCodes,
  withGeneratedTables,
} from '../../scripts/readme-tables.js';

describe('the README generated tables', () => {
  it('are what the config schema and the error codes render (npm run docs:readme writes them)', () => {
    const readme = readFileSync(README_PATH, 'utf8');
    expect(withGeneratedTables(readme)).toBe(readme);
  });

  it('name every setting and every secret variable', () => {
    const tables = renderConfigTables();
    for (const name of ['GRANTKEEPER_CONCURRENCY', 'refreshTiming.leadFraction', 'GRANTKEEPER_KEY_COMMAND']) {
      expect(tables).toContain(`\`${name}\``);
    }
    expect(renderErrorCodes()).toContain('| `min_valid_unsatisfiable` | 422 | 1 |');
  });
});
