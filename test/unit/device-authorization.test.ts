import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DEVICE_INTERVAL_SEC,
  deviceAuthorizationSchema,
} from '../../src/oauth/device-authorization.js';

const base = { device_code: 'dev-code-1', user_code: 'WDJB-MJHT', expires_in: 900 };

describe('device authorization responses (RFC 8628 §3.2)', () => {
  it("reads Microsoft's verification_uri and Google's verification_url alike, with the default interval", () => {
    const ms = deviceAuthorizationSchema.parse({
      ...base,
      verification_uri: 'https://microsoft.com/devicelogin',
    });
    const google = deviceAuthorizationSchema.parse({
      ...base,
      verification_url: 'https://www.google.com/device',
      interval: 5,
    });
    expect(ms).toEqual({
      deviceCode: 'dev-code-1',
      userCode: 'WDJB-MJHT',
      verificationUri: 'https://microsoft.com/devicelogin',
      expiresInSec: 900,
      intervalSec: DEFAULT_DEVICE_INTERVAL_SEC,
    });
    expect(google.verificationUri).toBe('https://www.google.com/device');
  });

  it('refuses an answer without a verification URI, with a non-web URI, or with unprintable codes', () => {
    expect(deviceAuthorizationSchema.safeParse(base).success).toBe(false);
    for (const bad of [
      { ...base, verification_uri: 'javascript:alert(1)' },
      { ...base, verification_uri: 'https://x.test/d', user_code: 'AB\nCD' },
      { ...base, verification_uri: 'https://x.test/d', device_code: 'has space' },
      { ...base, verification_uri: 'https://x.test/d', expires_in: 0 },
      { ...base, verification_uri: 'https://x.test/d', interval: -1 },
    ]) {
      expect(deviceAuthorizationSchema.safeParse(bad).success).toBe(false);
    }
  });
});
