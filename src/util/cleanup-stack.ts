/**
 * Things to undo, last first. `run` undoes every one even when some fail (a queue that will not
 * close must not keep the database open), then throws the first failure; a second `run` finds
 * nothing left, so a stop may be called twice.
 */
export class CleanupStack {
  private readonly steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    let first: { error: unknown } | undefined;
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        first ??= { error };
      }
    }
    if (first) throw first.error;
  }
}
