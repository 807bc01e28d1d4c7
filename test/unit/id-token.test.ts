import type { JWTPayload } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  authorizedPartyProblem,
  canValidateIdTokens,
  IdTokenError,
  issuerProblem,
  validateIdToken,
} from '../../src/consent/id-token.js';
import { type ProviderProfile, resolveProvider } from '../../src/oauth/providers.js';
import { type IdTokenSigner, idTokenSigner } from '../support/id-tokens.js';

const CLIENT = 'client-1';
const NONCE = 'nonce-abc';
const ISSUER = 'https://id.example.com';
const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const OTHER_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';
const now = () => Math.floor(Date.now() / 1000);

let signer: IdTokenSigner;
let stranger: IdTokenSigner;
let oidc: ProviderProfile;

beforeAll(async () => {
  [signer, stranger] = await Promise.all([idTokenSigner(), idTokenSigner()]);
  oidc = {
    ...(await resolveProvider({
      kind: 'oidc',
      issuer: ISSUER,
      endpoints: { authorization: `${ISSUER}/auth`, token: `${ISSUER}/token` },
    })),
    jwksUri: `${ISSUER}/jwks`,
  };
});

const valid = (extra: JWTPayload = {}): JWTPayload => ({
  iss: ISSUER,
  aud: CLIENT,
  sub: 'alice',
  nonce: NONCE,
  ...extra,
});

/** The error message, checked never to contain the token. */
async function refusal(token: string, profile = oidc, nonce: string | undefined = NONCE): Promise<string> {
  const err = await validateIdToken(
    token,
    { profile, clientId: CLIENT, ...(nonce ? { nonce } : {}) },
    signer.keys,
  ).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdTokenError);
  const message = (err as Error).message;
  expect(message).not.toContain(token);
  for (const part of token.split('.').filter((p) => p.length > 8)) expect(message).not.toContain(part);
  expect(message).toMatch(/^the provider's id_token failed validation: .*; nothing was stored$/);
  return message;
}

describe('validateIdToken', () => {
  it('returns the claims of a well-signed token for us with our nonce', async () => {
    const payload = await validateIdToken(
      await signer.sign(valid({ email: 'a@example.com' })),
      {
        profile: oidc,
        clientId: CLIENT,
        nonce: NONCE,
      },
      signer.keys,
    );
    expect(payload).toMatchObject({ sub: 'alice', email: 'a@example.com' });
  });

  it('refuses a token whose payload was altered after signing', async () => {
    const [h, , sig] = (await signer.sign(valid())).split('.');
    const altered = Buffer.from(
      JSON.stringify({ ...valid(), sub: 'victim', iat: now(), exp: now() + 60 }),
    ).toString('base64url');
    expect(await refusal(`${h}.${altered}.${sig}`)).toMatch(/signature does not verify/);
  });

  it('refuses a token signed by another key under the same key id', async () => {
    expect(await refusal(await stranger.sign(valid()))).toMatch(/signature does not verify/);
  });

  it('refuses a token signed with a key the issuer does not publish', async () => {
    expect(await refusal(await stranger.sign(valid(), { kid: 'unknown' }))).toMatch(
      /key the issuer's key set does not hold/,
    );
  });

  it('refuses unsigned and malformed tokens', async () => {
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(valid())).toString('base64url')}.`;
    expect(await refusal(unsigned)).toMatch(/algorithm that is not accepted|not a well-formed/);
    expect(await refusal('garbage')).toMatch(/not a well-formed signed JWT/);
  });

  it('refuses another audience, and several audiences unless azp is us', async () => {
    expect(await refusal(await signer.sign(valid({ aud: 'someone-else' })))).toMatch(
      /audience \(aud\) is not this client id/,
    );
    expect(await refusal(await signer.sign(valid({ aud: [CLIENT, 'api'] })))).toMatch(
      /azp is not this client id/,
    );
    expect(await refusal(await signer.sign(valid({ aud: [CLIENT, 'api'], azp: 'api' })))).toMatch(/azp/);
    const ok = await signer.sign(valid({ aud: [CLIENT, 'api'], azp: CLIENT }));
    await expect(
      validateIdToken(ok, { profile: oidc, clientId: CLIENT, nonce: NONCE }, signer.keys),
    ).resolves.toBeDefined();
  });

  it('refuses an expired token, one issued in the future or long ago, beyond a small tolerance', async () => {
    expect(await refusal(await signer.sign(valid({ iat: now() - 600, exp: now() - 120 })))).toMatch(
      /expired \(exp\)/,
    );
    expect(await refusal(await signer.sign(valid({ iat: now() + 600 })))).toMatch(/iat/);
    expect(await refusal(await signer.sign(valid({ iat: now() - 7200, exp: now() + 600 })))).toMatch(
      /issued too long ago/,
    );
    const slightlySkewed = await signer.sign(valid({ iat: now() + 30, exp: now() - 30 }));
    await expect(
      validateIdToken(slightlySkewed, { profile: oidc, clientId: CLIENT, nonce: NONCE }, signer.keys),
    ).resolves.toBeDefined();
  });

  it('refuses a missing, wrong or absent nonce when one was sent', async () => {
    expect(await refusal(await signer.sign(valid({ nonce: 'other' })))).toMatch(/nonce is not the one sent/);
    const { nonce: _, ...noNonce } = valid();
    expect(await refusal(await signer.sign(noNonce))).toMatch(/carries no nonce/);
  });

  it('refuses a token lacking sub or iss', async () => {
    const { sub: _, ...noSub } = valid();
    expect(await refusal(await signer.sign(noSub))).toMatch(/lacks the sub claim/);
  });

  it('refuses another issuer', async () => {
    expect(await refusal(await signer.sign(valid({ iss: 'https://evil.example.com' })))).toMatch(
      /issuer \(iss\) is not https:\/\/id\.example\.com/,
    );
  });
});

describe('issuers per provider', () => {
  it('microsoft multi-tenant aliases: the issuer is the token tenant own, shape checked', async () => {
    for (const tenant of ['common', 'organizations', 'consumers', 'contoso.onmicrosoft.com']) {
      const ms = await resolveProvider({ kind: 'microsoft', tenant });
      expect(canValidateIdTokens(ms)).toBe(true);
      expect(
        issuerProblem({ iss: `https://login.microsoftonline.com/${TENANT}/v2.0`, tid: TENANT }, ms),
      ).toBeUndefined();
      expect(
        issuerProblem({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, tid: TENANT }, ms),
      ).toMatch(/issuer/);
      expect(issuerProblem({ iss: `https://login.microsoftonline.com/${TENANT}/v2.0` }, ms)).toMatch(
        /no tenant id/,
      );
      expect(
        issuerProblem({ iss: 'https://login.microsoftonline.com/common/v2.0', tid: 'common' }, ms),
      ).toMatch(/no tenant id/);
      expect(issuerProblem({ iss: `https://sts.windows.net/${TENANT}/`, tid: TENANT }, ms)).toMatch(/issuer/);
    }
  });

  it('microsoft with a tenant id: that tenant only', async () => {
    const ms = await resolveProvider({ kind: 'microsoft', tenant: TENANT });
    expect(
      issuerProblem({ iss: `https://login.microsoftonline.com/${TENANT}/v2.0`, tid: TENANT }, ms),
    ).toBeUndefined();
    expect(
      issuerProblem({ iss: `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`, tid: OTHER_TENANT }, ms),
    ).toMatch(/issuer/);
  });

  it('google: both documented spellings', async () => {
    const google = await resolveProvider({ kind: 'google' });
    expect(issuerProblem({ iss: 'https://accounts.google.com' }, google)).toBeUndefined();
    expect(issuerProblem({ iss: 'accounts.google.com' }, google)).toBeUndefined();
    expect(issuerProblem({ iss: 'https://accounts.google.com.evil' }, google)).toMatch(/issuer/);
  });

  it('profiles without a key set or an issuer never validate (so their id_token claims are never read)', async () => {
    expect(canValidateIdTokens(await resolveProvider({ kind: 'x' }))).toBe(false);
    const { jwksUri: _, ...legacyGoogle } = await resolveProvider({ kind: 'google' });
    expect(canValidateIdTokens(legacyGoogle)).toBe(false);
    const explicit = await resolveProvider({
      kind: 'oidc',
      endpoints: { authorization: `${ISSUER}/auth`, token: `${ISSUER}/token` },
    });
    expect(canValidateIdTokens(explicit)).toBe(false);
    expect(canValidateIdTokens({ ...explicit, jwksUri: `${ISSUER}/jwks` })).toBe(false);
    expect(canValidateIdTokens(oidc)).toBe(true);
  });

  it('azp alone, for one audience, must still be us', () => {
    expect(authorizedPartyProblem({ aud: CLIENT }, CLIENT)).toBeUndefined();
    expect(authorizedPartyProblem({ aud: CLIENT, azp: CLIENT }, CLIENT)).toBeUndefined();
    expect(authorizedPartyProblem({ aud: CLIENT, azp: 'other' }, CLIENT)).toMatch(/azp/);
  });
});
