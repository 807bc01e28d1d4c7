import { describe, expect, it } from 'vitest';
import { decideAlert } from '../../src/notify/alert-policy.js';
import { signWebhook, verifyWebhookSignature } from '../../src/notify/webhook-signature.js';

const grant = (state: string, consecutiveFailures: number, alertedState: string | null) =>
  ({ id: 'g_1', state, consecutiveFailures, alertedState }) as Parameters<typeof decideAlert>[0];

describe('decideAlert', () => {
  it.each([
    ['a healthy grant', grant('active', 0, null), undefined],
    ['failing below the threshold', grant('failing', 2, null), undefined],
    [
      'failing at the threshold',
      grant('failing', 3, null),
      { event: 'grant.failing', alertedState: 'failing' },
    ],
    ['still failing, already alerted', grant('failing', 9, 'failing'), undefined],
    [
      'refused after failing',
      grant('needs_reconsent', 4, 'failing'),
      { event: 'grant.needs_reconsent', alertedState: 'needs_reconsent' },
    ],
    ['refused, already alerted', grant('needs_reconsent', 1, 'needs_reconsent'), undefined],
    [
      'a client error',
      grant('client_error', 1, null),
      { event: 'grant.client_error', alertedState: 'client_error' },
    ],
    [
      'active after an alert',
      grant('active', 0, 'needs_reconsent'),
      { event: 'grant.recovered', alertedState: null },
    ],
  ])('%s', (_what, view, expected) => {
    expect(decideAlert(view, 3)).toEqual(expected);
  });
});

describe('webhook signatures', () => {
  it('verify for the same secret, body and a fresh timestamp only', () => {
    const now = 1_800_000_000;
    const header = signWebhook('s3cret', '{"a":1}', now);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature('s3cret', header, '{"a":1}', { nowSec: now + 10 })).toBe(true);
    expect(verifyWebhookSignature('s3cret', header, '{"a":2}', { nowSec: now })).toBe(false);
    expect(verifyWebhookSignature('other', header, '{"a":1}', { nowSec: now })).toBe(false);
    expect(verifyWebhookSignature('s3cret', header, '{"a":1}', { nowSec: now + 3600 })).toBe(false);
    expect(verifyWebhookSignature('s3cret', undefined, '{"a":1}')).toBe(false);
    expect(verifyWebhookSignature('s3cret', 't=x,v1=zz', '{"a":1}')).toBe(false);
  });
});
