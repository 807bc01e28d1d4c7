import { GRANT_REF_MAX } from '../schemas.js';

/** Timeouts and caps of the API's HTTP server. */
export interface ApiLimits {
  /** Whole request, headers and body: cuts slow-loris clients. */
  requestTimeoutMs: number;
  /** How often node checks the request timeout on open connections. */
  timeoutCheckIntervalMs: number;
  /** Socket inactivity, including while a handler works. */
  connectionTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
}

/**
 * A grant reference in a path may arrive fully percent-encoded: three characters for each of the
 * longest accepted reference's (labels are ASCII). fastify's default of 100 is shorter than a label.
 */
export const MAX_PARAM_LENGTH = GRANT_REF_MAX * 3;

export function apiLimits(leaseMs: number, overrides: Partial<ApiLimits> = {}): ApiLimits {
  return {
    // Requests are small (bodies at most 16 KiB) and come from nearby clients: one that takes longer
    // than this is holding a socket, not sending. Generous for a loaded machine.
    requestTimeoutMs: 10_000,
    // Node's default (30 s) would let a slow client live three times the timeout.
    timeoutCheckIntervalMs: 1000,
    // A token read may wait out another holder's lease and then refresh under its own before it
    // answers: the socket stays silent that long without anything being wrong.
    connectionTimeoutMs: Math.max(60_000, 2 * leaseMs + 10_000),
    // Longer than the 60 s idle timeout of common proxies and load balancers, so they never reuse a
    // socket we are closing (fastify's own default, for the same reason).
    keepAliveTimeoutMs: 72_000,
    // Bounds sockets and memory under a flood. Far above what keep-alive client pools need, and under
    // the usual 1024 descriptor limit, which SQLite, Redis and provider sockets share.
    maxConnections: 512,
    ...overrides,
  };
}
