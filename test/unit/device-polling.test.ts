import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  afterDevicePoll,
  MAX_DEVICE_INTERVAL_SEC,
  SLOW_DOWN_STEP_SEC,
} from '../../src/policy/device-polling.js';

const answer = (code: string) => ({ code, transient: false });

describe('device-code polling (RFC 8628 §3.5)', () => {
  it('keeps the interval while pending and adds five seconds for slow_down, for every later poll', () => {
    expect(afterDevicePoll(answer('authorization_pending'), 5)).toEqual({ kind: 'wait', intervalSec: 5 });
    const slowed = afterDevicePoll(answer('slow_down'), 5);
    expect(slowed).toEqual({ kind: 'wait', intervalSec: 5 + SLOW_DOWN_STEP_SEC });
    // The raised interval is what the next pending answer keeps.
    expect(afterDevicePoll(answer('authorization_pending'), 10)).toEqual({ kind: 'wait', intervalSec: 10 });
  });

  it('stops on access_denied, expired_token and any other answer from the server', () => {
    expect(afterDevicePoll(answer('access_denied'), 5)).toEqual({ kind: 'stop', reason: 'denied' });
    expect(afterDevicePoll(answer('expired_token'), 5)).toEqual({ kind: 'stop', reason: 'expired' });
    expect(afterDevicePoll(answer('invalid_client'), 5)).toEqual({ kind: 'stop', reason: 'refused' });
    expect(afterDevicePoll(answer('invalid_grant'), 5)).toEqual({ kind: 'stop', reason: 'refused' });
  });

  it('polls less often, never more, after lost connections, up to a bound', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom('network_error', 'timeout', 'http_503'),
        (interval, code) => {
          const step = afterDevicePoll({ code, transient: true }, interval);
          expect(step.kind).toBe('wait');
          if (step.kind !== 'wait') return;
          expect(step.intervalSec).toBeGreaterThanOrEqual(Math.min(interval, MAX_DEVICE_INTERVAL_SEC));
          expect(step.intervalSec).toBeLessThanOrEqual(Math.max(interval, MAX_DEVICE_INTERVAL_SEC));
        },
      ),
    );
  });
});
