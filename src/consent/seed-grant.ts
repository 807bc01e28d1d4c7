import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { saveConsent } from '../grants/actions/save-consent.js';
import type { Grant } from '../grants/grant.js';
import type { ClientRepository, GrantRepository, OpenedClient, RefreshScheduler } from '../grants/ports.js';
import type { ProviderProfile } from '../oauth/providers.js';
import type { TokenClient } from '../oauth/token-client.js';
import { TokenEndpointError } from '../oauth/token-errors.js';
import type { TokenSet } from '../oauth/token-response.js';
import { issuedTokens, planAfterTokenResponse, refreshTokenEnd } from '../policy/refresh-plan.js';
import type { RefreshTimingPolicy } from '../policy/refresh-timing.js';
import { buildAuthorizationRequest, DEFAULT_REDIRECT_URI } from './authorization-request.js';
import { ConsentError } from './callback.js';
import { captureDeviceConsent } from './device-consent.js';
import { deriveLabel, labelProblem, takeoverProblem } from './grant-label.js';
import { IdTokenError } from './id-token.js';
import { type AccountIdentity, type BearerGet, resolveIdentity } from './identity.js';
import { startLoopbackReceiver } from './loopback-receiver.js';
import { readPastedCode } from './paste-reader.js';

export type ConsentMode = 'loopback' | 'manual' | 'device';

export interface ConsentIo {
  /** Instructions for the person seeding (stderr in the CLI). */
  messages: Writable;
  /** Manual mode reads the pasted redirect from here. */
  input: Readable;
  /** Opens the consent page; absent means the URL is only printed. */
  openBrowser?: (url: string) => Promise<void>;
  /** Device flow: draw the verification URI as a QR code too (a terminal on `messages`). */
  qrCode?: boolean;
}

export interface CaptureOptions {
  mode: Exclude<ConsentMode, 'device'>;
  scopes: readonly string[];
  timeoutMs: number;
}

export interface CapturedConsent {
  code: string;
  codeVerifier: string;
  /** The redirect URI the code was issued for, which the exchange must repeat. */
  redirectUri: string;
  /** The nonce the id_token must carry, when one was sent. */
  nonce?: string;
  /** Tells the waiting browser tab how it ended (loopback only; a no-op when pasting). */
  reply(outcome: { ok: boolean; message: string }): Promise<void>;
  close(): Promise<void>;
}

/** Builds the consent URL, shows or opens it, and waits for the code by loopback redirect or paste. */
export async function captureConsent(
  client: OpenedClient,
  options: CaptureOptions,
  io: ConsentIo,
): Promise<CapturedConsent> {
  const configured = client.redirectUri ?? DEFAULT_REDIRECT_URI;
  // Fixed before the listener starts, which checks it; the URL itself needs the listener's port.
  const state = randomBytes(32).toString('base64url');
  const build = (redirectUri: string) =>
    buildAuthorizationRequest({
      profile: client.profile,
      clientId: client.target.clientId,
      redirectUri,
      scopes: options.scopes,
      authorizeParams: client.authorizeParams,
      state,
    });
  const seconds = Math.round(options.timeoutMs / 1000);

  if (options.mode === 'manual') {
    const auth = build(configured);
    io.messages.write(
      `Open this URL in any browser and grant access:\n\n  ${auth.url}\n\n` +
        `The browser then goes to ${configured}, which may fail to load: that is expected.\n` +
        `Paste the full address it ended on (or just the code) here and press Enter (waiting ${seconds} s):\n`,
    );
    const code = await readPastedCode(io.input, { state, timeoutMs: options.timeoutMs });
    return {
      code,
      codeVerifier: auth.codeVerifier,
      redirectUri: auth.redirectUri,
      ...(auth.nonce ? { nonce: auth.nonce } : {}),
      reply: async () => {},
      close: async () => {},
    };
  }

  const receiver = await startLoopbackReceiver(configured, { state, timeoutMs: options.timeoutMs });
  try {
    const auth = build(receiver.redirectUri);
    io.messages.write(
      `Grant access in the browser at:\n\n  ${auth.url}\n\nWaiting up to ${seconds} s for the redirect to ${receiver.redirectUri}\n`,
    );
    if (io.openBrowser) {
      await io.openBrowser(auth.url).catch(() => {
        io.messages.write('Could not open a browser: open the URL above yourself.\n');
      });
    }
    const received = await receiver.callback;
    return {
      code: received.code,
      codeVerifier: auth.codeVerifier,
      redirectUri: receiver.redirectUri,
      ...(auth.nonce ? { nonce: auth.nonce } : {}),
      reply: received.reply,
      close: receiver.close,
    };
  } catch (err) {
    await receiver.close();
    throw err;
  }
}

/** What to add when a consent yields no refresh token, per provider. */
export function missingRefreshTokenAdvice(profile: ProviderProfile): string {
  switch (profile.kind) {
    case 'google':
      return 'Google returned no refresh token: the request needs access_type=offline and prompt=consent (the google preset sends both; the account may also remove the app at https://myaccount.google.com/permissions and consent again)';
    case 'x':
      return 'X returned no refresh token: add the offline.access scope (and make sure OAuth 2.0 is enabled for the app)';
    case 'microsoft':
      return 'Microsoft returned no refresh token: add the offline_access scope (and check that the app is not registered as a single-page application)';
    default:
      return 'the server returned no refresh token: add the offline_access scope, send prompt=consent, and allow the client the refresh_token grant';
  }
}

/** What storing a consent needs, however its code or tokens came (seed, consent links). */
export interface ConsentStoreDeps {
  grants: GrantRepository;
  tokenClient: Pick<TokenClient, 'exchangeCode'>;
  timing: RefreshTimingPolicy;
  /** Puts the first refresh in the queue (NO_SCHEDULER without Redis: the reconciler will). */
  scheduler: RefreshScheduler;
  getIdentity?: BearerGet;
}

export interface SeedDeps extends ConsentStoreDeps {
  clients: ClientRepository;
  tokenClient: Pick<TokenClient, 'exchangeCode' | 'requestDeviceAuthorization' | 'pollDeviceCode'>;
  io: ConsentIo;
  now?: () => number;
}

/** Which grant a consent may write. */
export interface LabelRule {
  /** The grant's label; absent: derived from the account, and only that account may replace it. */
  label?: string;
  /**
   * A named label too may only be replaced by the account it belongs to (a consent link: whoever
   * opens it must not take over someone else's grant).
   */
  sameAccountOnly?: boolean;
  /** Runs right before the save; the function it returns undoes it if the save then fails. */
  beforeSave?: () => Promise<() => Promise<void>>;
}

/** An authorization code with what its exchange must repeat. */
export interface ReceivedCode {
  code: string;
  codeVerifier: string;
  redirectUri: string;
  nonce?: string;
}

export interface SeedOptions {
  client: string;
  label?: string;
  /** Replaces the client's scopes; the offline scope is added either way. */
  scopes?: readonly string[];
  mode: ConsentMode;
  timeoutMs: number;
}

export interface SeedResult {
  grant: Grant;
  /** An existing grant with this label got the new tokens. */
  replaced: boolean;
  /** The first refresh is in the queue (else the service's reconciler adds it). */
  scheduled: boolean;
  identity: AccountIdentity;
  /** Why the account could not be named, when it could not. */
  identityProblem?: string;
}

/**
 * Consent capture end to end: authorization request, code, exchange, refresh-token check, identity,
 * the sealed grant and its first job. Nothing is stored unless every step before the save succeeded.
 */
export async function seedGrant(deps: SeedDeps, options: SeedOptions): Promise<SeedResult> {
  const now = deps.now ?? Date.now;
  const badLabel = options.label === undefined ? undefined : labelProblem(options.label);
  if (badLabel) throw new GrantkeeperError('bad_request', badLabel);
  const found = await deps.clients.findByName(options.client);
  const client = found && (await deps.clients.openById(found.id));
  if (!client) {
    const names = (await deps.clients.list()).map((c) => c.name);
    throw new GrantkeeperError(
      'unknown_client',
      `no client is named "${options.client}" (${names.length ? `known: ${names.join(', ')}` : 'add one with grantkeeper client add'})`,
    );
  }
  const scopes = options.scopes ?? client.scopes;
  if (options.mode === 'device') {
    // No redirect and no code: the poll that succeeds carries the tokens, and no nonce was sent.
    const { tokens, sentAt } = await captureDeviceConsent(
      {
        tokenClient: deps.tokenClient,
        messages: deps.io.messages,
        ...(deps.io.qrCode ? { qrCode: true } : {}),
        now,
      },
      client,
      { scopes, timeoutMs: options.timeoutMs },
    );
    return storeConsent(deps, client, { tokens, sentAt }, labelRule(options), now);
  }
  const consent = await captureConsent(
    client,
    { mode: options.mode, scopes, timeoutMs: options.timeoutMs },
    deps.io,
  );
  try {
    const result = await completeCodeConsent(deps, client, consent, labelRule(options), now);
    await consent.reply({ ok: true, message: `grantkeeper stored the grant "${result.grant.label}".` });
    return result;
  } catch (err) {
    await consent.reply({
      ok: false,
      message:
        err instanceof GrantkeeperError
          ? err.message
          : 'grantkeeper could not store the grant; see the terminal.',
    });
    throw err;
  } finally {
    await consent.close();
  }
}

const labelRule = (options: SeedOptions): LabelRule => (options.label ? { label: options.label } : {});

/** Exchanges an authorization code and stores the grant it brings (storeConsent). */
export async function completeCodeConsent(
  deps: ConsentStoreDeps,
  client: OpenedClient,
  received: ReceivedCode,
  rule: LabelRule,
  now: () => number,
): Promise<SeedResult> {
  const sentAt = now();
  let tokens: TokenSet;
  try {
    tokens = await deps.tokenClient.exchangeCode(client.target, {
      code: received.code,
      redirectUri: received.redirectUri,
      codeVerifier: received.codeVerifier,
    });
  } catch (err) {
    if (err instanceof TokenEndpointError) {
      throw new ConsentError(`the provider refused to exchange the authorization code: ${err.message}`, {
        cause: err,
      });
    }
    throw err;
  }
  return storeConsent(
    deps,
    client,
    { tokens, sentAt, ...(received.nonce ? { nonce: received.nonce } : {}) },
    rule,
    now,
  );
}

/** What every consent ends in, however its tokens came: checks, identity, label, the sealed save. */
async function storeConsent(
  deps: ConsentStoreDeps,
  client: OpenedClient,
  consented: { tokens: TokenSet; sentAt: number; nonce?: string },
  rule: LabelRule,
  now: () => number,
): Promise<SeedResult> {
  const { tokens, sentAt, nonce } = consented;
  if (!tokens.refreshToken) throw new ConsentError(missingRefreshTokenAdvice(client.profile));

  let identity: AccountIdentity = {};
  let identityProblem: string | undefined;
  try {
    identity = await resolveIdentity(client.profile, tokens, {
      idToken: { clientId: client.target.clientId, ...(nonce ? { nonce } : {}) },
      ...(deps.getIdentity ? { get: deps.getIdentity } : {}),
    });
  } catch (err) {
    // An id_token that fails validation may be forged: nothing it says is stored, nor the grant.
    if (err instanceof IdTokenError) throw err;
    // The consent is spent once exchanged: a missing name must not lose the grant.
    identityProblem = `could not look up the account (${(err as Error).message})`;
  }
  const label = rule.label ?? deriveLabel(identity, client.name);
  const existing = (await deps.grants.find(label))?.grant;
  // An explicit --label is the operator's choice: it replaces in place, as a repair does. A derived
  // one (or a consent link's) may only replace the same account's grant, checked again inside the
  // save's transaction.
  const refuseTakeover =
    rule.label === undefined || rule.sameAccountOnly
      ? (found: Parameters<typeof takeoverProblem>[1]) => {
          const incoming = {
            clientRef: client.id,
            ...(identity.subject ? { subject: identity.subject } : {}),
          };
          const takeover = takeoverProblem(label, found, incoming, rule.sameAccountOnly ? 'link' : 'seed');
          if (takeover) throw new ConsentError(takeover);
        }
      : undefined;
  if (existing) refuseTakeover?.(existing);
  const plan = planAfterTokenResponse(tokens, sentAt, now(), client.profile, deps.timing, existing?.mode);
  const refreshExpires = refreshTokenEnd(tokens, sentAt, client.profile.refreshTokenLifetime);
  const undo = rule.beforeSave ? await rule.beforeSave() : undefined;
  const saved = await saveConsent(
    deps,
    {
      clientRef: client.id,
      label,
      ...(identity.subject ? { subject: identity.subject } : {}),
      ...issuedTokens(tokens, plan),
      refreshToken: tokens.refreshToken,
      ...(refreshExpires ? { refreshExpires } : {}),
      now: now(),
    },
    refuseTakeover,
  ).catch(async (err: unknown) => {
    await undo?.();
    throw err;
  });
  return {
    ...saved,
    identity,
    ...(identityProblem ? { identityProblem } : {}),
  };
}
