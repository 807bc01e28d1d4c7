/**
 * A live counter on stderr: redrawn in place on a terminal, one line every few seconds otherwise
 * (CI logs), silent when disabled (the harness test).
 */
export class Progress {
  private lastLineAt = 0;
  private drawn = false;

  constructor(private readonly enabled: boolean) {}

  update(label: string, done: number, total: number, startedAt: number): void {
    if (!this.enabled) return;
    const elapsed = (Date.now() - startedAt) / 1000;
    const rate = elapsed > 0 ? Math.round(done / elapsed) : 0;
    const share = total > 0 ? Math.min(1, done / total) : 0;
    const bar = '#'.repeat(Math.round(share * 24)).padEnd(24, '.');
    const text = `  ${label.padEnd(34)} [${bar}] ${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')}  ${rate.toLocaleString('en-US')}/s  ${elapsed.toFixed(1)} s`;
    if (process.stderr.isTTY) {
      process.stderr.write(`\r${text}\x1b[K`);
      this.drawn = true;
    } else if (Date.now() - this.lastLineAt > 5000) {
      process.stderr.write(`${text}\n`);
      this.lastLineAt = Date.now();
    }
  }

  line(text: string): void {
    if (!this.enabled) return;
    this.finishLine();
    process.stderr.write(`${text}\n`);
  }

  finishLine(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
    this.lastLineAt = 0;
  }
}
