import { ERROR_CODES, type ErrorCode } from './error-codes.js';

/**
 * A failure named by a stable code (src/errors/error-codes.ts), with a message safe to show: the
 * API answers it with the code's status, the CLI prints it in one line and exits with the code's
 * exit code, the library hands it to the caller as is.
 */
export class GrantkeeperError<C extends ErrorCode = ErrorCode> extends Error {
  override readonly name = 'GrantkeeperError';
  readonly httpStatus: number;
  readonly exitCode: number;
  /** When asking again can help (epoch ms, this process's clock). */
  readonly retryAt: number | undefined;

  constructor(
    readonly code: C,
    message: string,
    options: { retryAt?: number | undefined; httpStatus?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.httpStatus = options.httpStatus ?? ERROR_CODES[code].httpStatus;
    this.exitCode = ERROR_CODES[code].exitCode;
    this.retryAt = options.retryAt;
  }
}

/**
 * A client registration that cannot work (no secret or key for its auth method, an endpoint off
 * https): it will not fix itself, so a refresh that meets one stops the grant as a client error.
 */
export class ClientConfigError extends GrantkeeperError<'client_misconfigured'> {
  constructor(message: string) {
    super('client_misconfigured', message);
  }
}
