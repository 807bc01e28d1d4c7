import { describe, expect, it } from 'vitest';
import { alertJobIsAuthentic } from '../../jobs/alert-queue.js';
import type { AlertView } from '../../src/grants/ports.js';
import { alertStillHolds, decideAlert } from '../../src/notify/alert-policy.js';
import { signWebhook, verifyWebhookSignature } from '../../src/notify/webhook-signature.js';

const NOW = 1_800_000_000_000;
const grant = (
  state: string,
  consecutiveFailures: number,
  alertedState: string | null,
  lease: { leaseSentAt?: number; leaseUntil?: number } = {},
) =>
  ({
    id: 'g_1',
    state,
    consecutiveFailures,
    alertedState,
    leaseSentAt: lease.leaseSentAt ?? null,
    leaseUntil: lease.leaseUntil ?? null,
  }) as AlertView;

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
    ['broken', grant('broken', 1, 'failing'), { event: 'grant.broken', alertedState: 'broken' }],
    [
      'an answer lost, the lease over',
      grant('failing', 1, null, { leaseSentAt: NOW - 5000, leaseUntil: NOW - 1000 }),
      { event: 'grant.in_doubt', alertedState: 'in_doubt' },
    ],
    [
      'a holder killed after sending (nothing recorded)',
      grant('active', 0, null, { leaseSentAt: NOW - 5000, leaseUntil: NOW - 1 }),
      { event: 'grant.in_doubt', alertedState: 'in_doubt' },
    ],
    [
      'a request in flight under its lease',
      grant('active', 0, null, { leaseSentAt: NOW - 50, leaseUntil: NOW + 1000 }),
      undefined,
    ],
    ['in doubt, already alerted', grant('failing', 9, 'in_doubt', { leaseSentAt: NOW - 5000 }), undefined],
    ['settled after doubt', grant('active', 0, 'in_doubt'), { event: 'grant.recovered', alertedState: null }],
  ])('%s', (_what, view, expected) => {
    expect(decideAlert(view, 3, NOW)).toEqual(expected);
  });
});

describe('alertStillHolds (the worker decides from the store, not from the job)', () => {
  const never = () => false;
  it.each([
    ['grant.needs_reconsent', grant('active', 0, null), false],
    ['grant.needs_reconsent', grant('needs_reconsent', 1, 'needs_reconsent'), true],
    ['grant.failing', grant('failing', 5, null), false],
    ['grant.failing', grant('failing', 5, 'failing'), true],
    ['grant.recovered', grant('failing', 1, 'failing'), false],
    ['grant.recovered', grant('active', 0, null), true],
    ['grant.in_doubt', grant('active', 0, null), false],
    ['grant.broken', grant('broken', 1, 'broken'), true],
    ['grant.conflict', grant('needs_reconsent', 1, 'needs_reconsent'), false],
  ] as const)('%s for %o: %s', (event, view, expected) => {
    expect(alertStillHolds(event, view, never, NOW)).toBe(expected);
  });

  it('sends a conflict only when the store recorded one then', () => {
    expect(
      alertStillHolds('grant.conflict', grant('needs_reconsent', 1, null), (at) => at === NOW, NOW),
    ).toBe(true);
  });

  it('refuses job data not signed with the webhook secret', () => {
    const forged = {
      event: 'grant.recovered' as const,
      subject: 'g_1',
      at: NOW,
      target: '0'.repeat(16),
      mac: 'a'.repeat(64),
    };
    expect(alertJobIsAuthentic('s3cret', forged)).toBe(false);
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
