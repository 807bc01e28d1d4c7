import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Field names that may hold a secret anywhere in a log object. pino censors them before
 * serialising, so a token that slips into a log call still never reaches a log line.
 */
const SECRET_KEYS = [
  'accessToken',
  'refreshToken',
  'idToken',
  'access_token',
  'refresh_token',
  'id_token',
  'clientSecret',
  'client_secret',
  'code',
  'codeVerifier',
  'code_verifier',
  'password',
  'authorization',
  'key',
  'secret',
];

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization',
  'req.headers.cookie',
];

export interface LoggerOptions {
  level?: string;
  /** Where lines go; tests pass a stream to inspect them. Defaults to stdout. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'grantkeeper' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

/**
 * The same logger without the redaction pass, for a line whose fields are fixed, named at the call
 * and hold no secret (the per-refresh audit line): censoring is most of a line's cost, and a
 * worker writes one line per refresh.
 */
export function unredacted(logger: Logger): Logger {
  return logger.child({}, { redact: { paths: [] } });
}
