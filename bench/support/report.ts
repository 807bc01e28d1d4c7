import type { Environment, ProfileSummary } from './metrics.js';

export interface Figure {
  name: string;
  /** null while the grantkeeper side cannot be measured yet (the note says why). */
  value: number | null;
  unit: string;
  better: 'higher' | 'lower';
  reference?: { name: string; value: number };
  /** value / reference: the figure that survives a noisy shared machine. */
  ratio?: number;
  target?: { text: string; holds: boolean };
  note?: string;
}

export interface ScenarioResult {
  id: string;
  title: string;
  figures: Figure[];
  /** CPU profile of the grantkeeper workload, when --profile was given. */
  profile?: ProfileSummary;
  details: Record<string, unknown>;
}

export interface BenchResult {
  environment: Environment;
  options: Record<string, unknown>;
  scenarios: ScenarioResult[];
  durationSeconds: number;
}

export function figure(f: Omit<Figure, 'ratio'>): Figure {
  const ratio =
    f.value !== null && f.reference && f.reference.value > 0
      ? round(f.value / f.reference.value, 3)
      : undefined;
  return { ...f, ...(ratio === undefined ? {} : { ratio }) };
}

export function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function format(value: number | null, unit: string): string {
  if (value === null) return 'pending';
  if (!Number.isFinite(value)) return String(value);
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  const text = value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return unit ? `${text} ${unit}` : text;
}

export function toMarkdown(result: BenchResult): string {
  const env = result.environment;
  const lines = [
    `# grantkeeper bench, ${env.date}`,
    '',
    `node ${env.node} (${env.platform}), ${env.cores} × ${env.cpu}, ${env.memoryGiB} GiB; redis ${env.redis}, ` +
      `${env.postgres ? `PostgreSQL ${env.postgres}, ` : ''}bullmq ${env.bullmq}, undici ${env.undici}. Options: \`${JSON.stringify(result.options)}\`. ` +
      `Took ${Math.round(result.durationSeconds)} s.`,
    '',
    'Every figure is measured next to its reference in the same run; the ratio is grantkeeper / reference ' +
      '(↑ higher is better, ↓ lower is better).',
    '',
    '| Scenario | Figure | grantkeeper | Reference | Ratio | Target | Holds |',
    '| --- | --- | ---: | --- | ---: | --- | :---: |',
  ];
  for (const s of result.scenarios) {
    for (const f of s.figures) {
      const reference = f.reference ? `${format(f.reference.value, f.unit)} (${f.reference.name})` : '';
      const arrow = f.better === 'higher' ? '↑' : '↓';
      const holds = f.target ? (f.value === null ? '…' : f.target.holds ? 'yes' : '**no**') : '';
      lines.push(
        `| ${s.title} | ${f.name} ${arrow} | ${format(f.value, f.unit)} | ${reference} | ${f.ratio ?? ''} | ${f.target?.text ?? ''} | ${holds} |`,
      );
    }
  }
  const notes = result.scenarios.flatMap((s) =>
    s.figures.filter((f) => f.note).map((f) => `- **${s.title}, ${f.name}**: ${f.note}`),
  );
  if (notes.length > 0) lines.push('', '## Notes', '', ...notes);
  for (const s of result.scenarios) {
    if (!s.profile) continue;
    lines.push(
      '',
      `## Profile: ${s.title} (grantkeeper worker, self time)`,
      '',
      `By origin: ${s.profile.byOrigin.map((e) => `${e.name} ${e.selfPercent} %`).join(', ')}.`,
      '',
      'Heaviest functions:',
      '',
      ...s.profile.byFunction.map((e) => `- ${e.selfPercent} % \`${e.name}\``),
    );
  }
  return `${lines.join('\n')}\n`;
}
