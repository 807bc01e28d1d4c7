/**
 * What a device-code poll's failure means for the next one (RFC 8628 §3.5). Pure, so every branch
 * is tested without a server.
 */
export type DevicePollStep =
  | { kind: 'wait'; intervalSec: number }
  | { kind: 'stop'; reason: 'denied' | 'expired' | 'refused' };

/** RFC 8628 §3.5: slow_down adds five seconds "for this and all subsequent requests". */
export const SLOW_DOWN_STEP_SEC = 5;
/** Doubling after lost connections stops here, so a long outage still polls now and then. */
export const MAX_DEVICE_INTERVAL_SEC = 60;

export interface DevicePollFailure {
  /** The OAuth error code, or our own (`network_error`, `timeout`, `http_503` …). */
  code: string;
  /** A network error, timeout, 5xx or 429: no answer about the consent itself. */
  transient: boolean;
}

export function afterDevicePoll(failure: DevicePollFailure, intervalSec: number): DevicePollStep {
  switch (failure.code) {
    case 'authorization_pending':
      return { kind: 'wait', intervalSec };
    case 'slow_down':
      return { kind: 'wait', intervalSec: intervalSec + SLOW_DOWN_STEP_SEC };
    case 'access_denied':
      return { kind: 'stop', reason: 'denied' };
    case 'expired_token':
      return { kind: 'stop', reason: 'expired' };
  }
  // §3.5: on a connection timeout, reduce the polling frequency before retrying; any other error
  // code ends the flow.
  if (failure.transient) {
    const doubled = Math.min(MAX_DEVICE_INTERVAL_SEC, intervalSec * 2);
    return { kind: 'wait', intervalSec: Math.max(intervalSec, doubled) };
  }
  return { kind: 'stop', reason: 'refused' };
}
