import { GrantkeeperError } from '../errors/grantkeeper-error.js';

/**
 * A refusal of the CLI's own (a flag combination, a missing confirmation), written for the
 * operator: it says what is wrong and what to fix. Everything below the CLI throws coded
 * GrantkeeperErrors; both are printed as one line (no stack trace unless --verbose).
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

/**
 * True for an error whose message was written for people (a UserError or a coded
 * GrantkeeperError): it may be shown as it is; anything else is a bug and shows nothing of itself.
 */
export function isForPeople(err: unknown): err is UserError | GrantkeeperError {
  return err instanceof UserError || err instanceof GrantkeeperError;
}
