import { z } from 'zod';

/** RFC 8628 §3.4: the grant type a device code is redeemed with. */
export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** RFC 8628 §3.2 default when the server names no polling interval. */
export const DEFAULT_DEVICE_INTERVAL_SEC = 5;

/**
 * An RFC 8628 device authorization response, parsed. The device code is a secret: never shown. The
 * URIs are shown to a person, so the token client also holds them to https (or loopback http).
 */
export interface DeviceAuthorization {
  deviceCode: string;
  /** What the person types at the verification URI. */
  userCode: string;
  verificationUri: string;
  /** The URI with the user code in it, where the server offers one (for a QR code or a click). */
  verificationUriComplete?: string;
  expiresInSec: number;
  intervalSec: number;
}

const visible = z.string().regex(/^[\x21-\x7e]+$/, 'must be visible ASCII');
const shownUrl = z.url({ protocol: /^https?$/ });

/** Google still answers `verification_url` (the draft's name); everyone else `verification_uri`. */
export const deviceAuthorizationSchema = z
  .object({
    device_code: visible.max(4096),
    user_code: z.string().regex(/^[\x20-\x7e]{1,64}$/, 'must be printable ASCII, at most 64 characters'),
    verification_uri: shownUrl.optional(),
    verification_url: shownUrl.optional(),
    verification_uri_complete: shownUrl.optional(),
    expires_in: z.number().int().positive().max(86_400),
    interval: z.number().int().positive().max(300).optional(),
  })
  .refine((r) => r.verification_uri ?? r.verification_url, {
    message: 'has no verification_uri',
    path: ['verification_uri'],
  })
  .transform(
    (r): DeviceAuthorization => ({
      deviceCode: r.device_code,
      userCode: r.user_code,
      verificationUri: (r.verification_uri ?? r.verification_url) as string,
      ...(r.verification_uri_complete ? { verificationUriComplete: r.verification_uri_complete } : {}),
      expiresInSec: r.expires_in,
      intervalSec: r.interval ?? DEFAULT_DEVICE_INTERVAL_SEC,
    }),
  );
