import pc from 'picocolors';

/** Colours only when a person is reading (a TTY) and NO_COLOR is not set. */
const colors = pc.createColors(Boolean(process.stdout.isTTY) && pc.isColorSupported);

export { colors };

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printLine(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Notes for the person at the terminal that must not mix into stdout (e.g. under `$(…)`). */
export function note(line: string): void {
  process.stderr.write(`${line}\n`);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: measuring text without its colour codes
const visibleLength = (s: string) => s.replace(/\u001b\[[0-9;]*m/g, '').length;

/** A plain left-aligned table; cells may carry colour codes. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - visibleLength(c))))
      .join('  ')
      .trimEnd();
  return [colors.bold(line(headers)), ...rows.map(line)].join('\n');
}

/** `key: value` lines, keys aligned. */
export function renderFields(fields: Array<[string, string]>): string {
  const width = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${colors.dim(`${k}:`.padEnd(width + 1))} ${v}`).join('\n');
}

/** A size such as `512 B`, `8.0 MiB` or `1.2 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A short span such as `4m 10s`, `3h 2m` or `12d 4h`. */
export function formatSpan(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [unit, size] of units) {
    if (rest >= size || (parts.length === 0 && unit === 's')) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** `in 4m 10s` for the future, `3m ago` for the past, `-` when there is no time. */
export function formatRelative(at: number | null | undefined, now: number): string {
  if (at === null || at === undefined) return '-';
  return at >= now ? `in ${formatSpan(at - now)}` : `${formatSpan(now - at)} ago`;
}

export function isoOrNull(at: number | null | undefined): string | null {
  return at === null || at === undefined ? null : new Date(at).toISOString();
}

export function colorState(state: string): string {
  switch (state) {
    case 'active':
      return colors.green(state);
    case 'failing':
      return colors.yellow(state);
    default:
      return colors.red(state);
  }
}

/** The "Examples" block every command's --help ends with. */
export function examples(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}`;
}
