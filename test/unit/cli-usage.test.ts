import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';

/** Runs the CLI in this process for input rejected before any store is opened. */
async function run(...args: string[]) {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  try {
    await main(['node', 'grantkeeper', ...args]);
    return { code: process.exitCode ?? 0, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('CLI usage', () => {
  const env = { ...process.env };
  beforeEach(() => {
    process.exitCode = undefined;
    // Nothing here may reach a store: a data dir that cannot be created would say so.
    process.env.GRANTKEEPER_DATA_DIR = '/dev/null/gk';
  });
  afterEach(() => {
    process.exitCode = undefined;
    process.env = { ...env };
  });

  it('prints its version', async () => {
    const r = await run('--version');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('answers every command group without a subcommand with its help and exit 2', async () => {
    const { buildProgram } = await import('../../src/cli/main.js');
    const groups = buildProgram().commands.filter((c) => c.commands.length > 0);
    expect(groups.length).toBeGreaterThan(2);
    for (const group of groups) {
      const r = await run(group.name());
      expect({ group: group.name(), code: r.code }).toEqual({ group: group.name(), code: 2 });
      expect(r.stderr).toMatch(new RegExp(`Usage: grantkeeper ${group.name()} `));
    }
  });

  it('has --help with an example on every command', async () => {
    const commands = [
      ['client', 'add'],
      ['client', 'list'],
      ['client', 'show'],
      ['client', 'remove'],
      ['seed'],
      ['grants'],
      ['grant', 'show'],
      ['token'],
      ['refresh'],
      ['failed'],
      ['retry'],
      ['revoke'],
      ['remove'],
      ['status'],
    ];
    for (const command of commands) {
      const r = await run(...command, '--help');
      expect({ command, code: r.code }).toEqual({ command, code: 0 });
      expect(r.stdout).toMatch(/\nExamples?:\n {2}\S/);
    }
  });

  it('answers bad flags with usage and exit 2, or one clear line and exit 1, never a stack trace', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['token'], 2, /missing required argument 'grant'/],
      [['token', '@soon', '--min-valid', 'soon'], 2, /--min-valid.*expected a whole number of seconds/],
      [['grants', '--bogus'], 2, /unknown option '--bogus'/],
      [
        ['client', 'add', 'a', '--provider', 'nope', '--client-id', 'x'],
        2,
        /Allowed choices are x, microsoft, google, google-service-account, oidc/,
      ],
      [['client', 'add', 'a', '--client-id', 'x'], 2, /required option '--provider <kind>' not specified/],
      [
        ['client', 'add', 'a', '--provider', 'x', '--client-id', 'x', '--tenant', 't'],
        2,
        /^grantkeeper: --tenant is only for --provider microsoft\n$/,
      ],
      [['client', 'add', 'a', '--provider', 'oidc', '--client-id', 'x'], 2, /needs --issuer/],
      [
        ['client', 'add', 'a', '--provider', 'x', '--client-id', 'x', '--client-secret-env', 'GK_UNSET'],
        1,
        /^grantkeeper: GK_UNSET is not set/,
      ],
      [
        [
          'client',
          'add',
          'a',
          '--provider',
          'x',
          '--client-id',
          'x',
          '--client-secret-env',
          'GK_S',
          '--client-secret-stdin',
        ],
        2,
        /either/,
      ],
      [
        ['client', 'add', 'a', '--provider', 'x', '--client-id', 'x', '--client-secret', 'oops'],
        2,
        /unknown option '--client-secret'/,
      ],
      [['client', 'add', 'a b', '--provider', 'x', '--client-id', 'x'], 2, /letters, digits/],
      [
        [
          'client',
          'add',
          'a',
          '--provider',
          'x',
          '--client-id',
          'x',
          '--redirect-uri',
          'http://example.com/cb',
        ],
        2,
        /must use https/,
      ],
      [
        ['client', 'add', 'a', '--provider', 'microsoft', '--tenant', 'a/b', '--client-id', 'x'],
        1,
        /tenant "a\/b" is not valid/,
      ],
      [['seed', 'c', '--timeout', '0'], 2, /must be at least 5/],
      [['seed', 'c', '--label', 'bad label'], 2, /label "bad label" is not valid/],
      [['seed', 'c', '--label', 'g_AAAAAAAAAAAA'], 2, /shape of a grant id/],
      [
        ['client', 'add', 'a', '--provider', 'x', '--client-id', 'x', '--authorize-param', 'state=x'],
        2,
        /state is set by grantkeeper itself/,
      ],
      [['seed', 'c', '--scopes', 'a "b"'], 2, /printable words/],
      [['retry'], 2, /name one grant or pass --all-failed/],
      [['retry', '@soon', '--all-failed'], 2, /name one grant or pass --all-failed/],
      [['grant', 'show', '@x', '--events', '-1'], 2, /--events/],
    ];
    for (const [args, code, message] of cases) {
      const r = await run(...args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });
});
