import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'grantkeeper-signature';
export const EVENT_HEADER = 'grantkeeper-event';
export const DELIVERY_HEADER = 'grantkeeper-delivery';

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp is signed too, so a receiver
 * that checks it against its clock can refuse replays of old deliveries.
 */
export function signWebhook(secret: string, body: string, timestampSec: number): string {
  return `t=${timestampSec},v1=${hmac(secret, timestampSec, body)}`;
}

/** For receivers (and our tests): true when the header signs this body and is fresh enough. */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined,
  body: string,
  options: { toleranceSec?: number; nowSec?: number } = {},
): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || typeof parts.v1 !== 'string') return false;
  const now = options.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceSec ?? 300)) return false;
  const expected = Buffer.from(hmac(secret, t, body), 'hex');
  const given = Buffer.from(parts.v1, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function hmac(secret: string, timestampSec: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSec}.${body}`).digest('hex');
}
