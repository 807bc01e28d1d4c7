import type { FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, isErrorCode } from '../errors/error-codes.js';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { describeStorageFailure, STORAGE_RETRY_MS, storageFailureOf } from '../grants/storage-error.js';

/** A failure as the API answers it: the code's status, its headers and `{ error, message }`. */
export interface HttpError {
  status: number;
  headers: Record<string, string>;
  body: { error: string; message: string };
}

type FastifyFailure = Error & { statusCode?: number; code?: string; validationContext?: string };

/**
 * The one mapping from a failure to an answer. Our own errors carry their code; a write the
 * database refused is worth retrying, not a bug; Fastify's client errors (bad JSON, wrong content
 * type, a body too large) are bad requests; anything else is a bug and says nothing more.
 */
export function toHttpError(err: unknown, now = Date.now()): HttpError {
  if (err instanceof GrantkeeperError) return answer(err, now);
  const storage = storageFailureOf(err);
  if (storage) {
    return answer(
      new GrantkeeperError('storage_unavailable', describeStorageFailure(storage), {
        retryAt: now + STORAGE_RETRY_MS,
      }),
      now,
    );
  }
  const failure = err as FastifyFailure;
  if (failure.code === 'FST_ERR_VALIDATION' || failure.validationContext) {
    return answer(
      new GrantkeeperError('bad_request', `${failure.validationContext ?? 'request'}: ${failure.message}`),
      now,
    );
  }
  const status = failure.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    return answer(new GrantkeeperError('bad_request', failure.message, { httpStatus: status }), now);
  }
  return answer(new GrantkeeperError('internal', 'internal error'), now);
}

function answer(err: GrantkeeperError, now: number): HttpError {
  const headers: Record<string, string> = {};
  if (err.code === 'unauthorized') headers['www-authenticate'] = 'Bearer';
  if (err.retryAt !== undefined) {
    headers['retry-after'] = String(Math.max(1, Math.ceil((err.retryAt - now) / 1000)));
  }
  return { status: err.httpStatus, headers, body: { error: err.code, message: err.message } };
}

const RETRY_SIGNALS: ReadonlySet<string> = new Set<ErrorCode>(['unavailable', 'storage_unavailable']);

/** The API's error handler: one answer per failure, and a log line for what needs a look. */
export function answerError(err: Error, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const route = req.routeOptions.url;
  // A write the db refused is logged here; a reader's storage_unavailable was logged where it arose.
  const storage = err instanceof GrantkeeperError ? undefined : storageFailureOf(err);
  if (storage) req.log.warn({ route, cause: storage }, 'database refused a write');
  const http = toHttpError(err);
  // A failure on our side needs a look, a bug or not (a damaged row, an unusable store); the retry
  // signals were logged where they arose, and a refusal of the caller is the caller's to fix.
  if (http.status >= 500 && !RETRY_SIGNALS.has(http.body.error)) {
    req.log.error(
      { err: { name: err.name, message: err.message }, errorCode: http.body.error, route },
      'request failed',
    );
  }
  return send(reply, http);
}

/**
 * Answers a refusal from a hook directly rather than throwing: @bull-board's routes have an error
 * handler of their own, which would reshape the body.
 */
export function refuse(reply: FastifyReply, error: GrantkeeperError): FastifyReply {
  return send(reply, toHttpError(error));
}

function send(reply: FastifyReply, http: HttpError): FastifyReply {
  return reply.code(http.status).headers(http.headers).send(http.body);
}

/** An error body from elsewhere (the library reading the API), by its code when it is one of ours. */
export function fromErrorBody(
  body: { error: string; message: string } | undefined,
  status: number,
  retryAt: number | undefined,
): GrantkeeperError {
  if (body && isErrorCode(body.error)) {
    return new GrantkeeperError(body.error, body.message, { httpStatus: status, retryAt });
  }
  return new GrantkeeperError('http_error', body?.message ?? `grantkeeper answered HTTP ${status}`, {
    httpStatus: status,
    retryAt,
  });
}
