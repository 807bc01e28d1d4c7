/**
 * An error whose message is written for the operator: it says what is wrong and what to fix.
 * The CLI prints it as one line (no stack trace unless --verbose) and exits non-zero.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    message: string,
    readonly exitCode = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
