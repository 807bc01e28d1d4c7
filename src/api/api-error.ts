import type { FastifyReply } from 'fastify';

/** An error the API answers with its own status and a message safe to show (no label, no token). */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * Answers a refusal from a hook directly rather than throwing: @bull-board's routes have an error
 * handler of their own, which would reshape the body.
 */
export function refuse(reply: FastifyReply, error: ApiError): FastifyReply {
  return reply
    .code(error.statusCode)
    .headers(error.headers)
    .send({ error: error.code, message: error.message });
}

/** A Retry-After header (whole seconds, at least 1) for a retry at `at`. */
export function retryAfter(at: number): Record<string, string> {
  return { 'retry-after': String(Math.max(1, Math.ceil((at - Date.now()) / 1000))) };
}
