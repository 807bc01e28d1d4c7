import { describe, expect, it } from 'vitest';
import { describeAuthorizationError } from '../../src/consent/callback.js';
import { sanitizeText } from '../../src/oauth/token-errors.js';

// U+202E reverses what follows on screen; U+2028 breaks the line in many log viewers and terminals.
const HOSTILE = 'refused\u202e;tset\u2028forged: line\u2066x\u2069\u200b ok';

describe('provider text shown to people', () => {
  it('loses Unicode line separators and bidi controls in token errors', () => {
    const text = sanitizeText(HOSTILE);
    expect(text).toBe('refused ;tset forged: line x ok');
    expect(text).not.toMatch(/[\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b]/);
  });

  it('loses them in consent errors too', () => {
    const text = describeAuthorizationError('access_denied', HOSTILE);
    expect(text).toContain('refused ;tset forged: line x ok');
    expect(text).not.toMatch(/[\u2028\u202e\u2066\u2069\u200b]/);
  });
});
