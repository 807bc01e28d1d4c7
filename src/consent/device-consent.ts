import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { renderUnicodeCompact } from 'uqr';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import type { OpenedClient } from '../grants/ports.js';
import type { TokenClient } from '../oauth/token-client.js';
import { TokenEndpointError } from '../oauth/token-errors.js';
import type { TokenSet } from '../oauth/token-response.js';
import { afterDevicePoll } from '../policy/device-polling.js';
import { withOfflineScope } from './authorization-request.js';
import { ConsentError } from './callback.js';

export interface DeviceConsentDeps {
  tokenClient: Pick<TokenClient, 'requestDeviceAuthorization' | 'pollDeviceCode'>;
  messages: Writable;
  /** Draws the verification URI as a QR code in the terminal (off when stderr is not a terminal). */
  qrCode?: boolean;
  now?: () => number;
  wait?: (ms: number) => Promise<unknown>;
}

export interface DeviceConsent {
  tokens: TokenSet;
  /** When the successful poll went out: expiry is counted from here (invariant 7). */
  sentAt: number;
}

/**
 * RFC 8628 device-code consent: ask for a user code, show it with the verification URI, and poll the
 * token endpoint at the server's interval until the person approves, denies or the code expires.
 * Nothing is stored here; the caller stores the tokens exactly as after a redirect.
 */
export async function captureDeviceConsent(
  deps: DeviceConsentDeps,
  client: OpenedClient,
  options: { scopes: readonly string[]; timeoutMs: number },
): Promise<DeviceConsent> {
  const now = deps.now ?? Date.now;
  const wait = deps.wait ?? sleep;
  const endpoint = client.profile.deviceAuthorizationEndpoint;
  if (!endpoint) {
    throw new GrantkeeperError(
      'bad_request',
      `client ${client.name}'s provider (${client.profile.kind}) offers no device authorization endpoint: ` +
        'seed it with --manual instead',
    );
  }
  const scopes = withOfflineScope(client.profile, options.scopes);
  let device: Awaited<ReturnType<DeviceConsentDeps['tokenClient']['requestDeviceAuthorization']>>;
  try {
    device = await deps.tokenClient.requestDeviceAuthorization(client.target, endpoint, scopes);
  } catch (err) {
    if (!(err instanceof TokenEndpointError)) throw err;
    throw new ConsentError(`the provider refused to start device consent: ${err.message}`, { cause: err });
  }
  const started = now();
  const deadline = started + Math.min(device.expiresInSec * 1000, options.timeoutMs);
  deps.messages.write(
    `On any device, open\n\n  ${device.verificationUri}\n\nand enter the code\n\n  ${device.userCode}\n\n` +
      (device.verificationUriComplete ? `(or open ${device.verificationUriComplete} directly)\n` : '') +
      (deps.qrCode
        ? `\n${renderUnicodeCompact(device.verificationUriComplete ?? device.verificationUri)}\n`
        : '') +
      `Waiting up to ${Math.round((deadline - started) / 1000)} s for the approval…\n`,
  );

  let intervalSec = device.intervalSec;
  for (;;) {
    if (now() + intervalSec * 1000 > deadline) break;
    await wait(intervalSec * 1000);
    const sentAt = now();
    try {
      return { tokens: await deps.tokenClient.pollDeviceCode(client.target, device.deviceCode), sentAt };
    } catch (err) {
      if (!(err instanceof TokenEndpointError)) throw err;
      // No answer about the consent itself: no HTTP answer at all, a 5xx or a 429.
      const transient = err.status === undefined || err.status >= 500 || err.status === 429;
      const step = afterDevicePoll({ code: err.code, transient }, intervalSec);
      if (step.kind === 'wait') {
        intervalSec = step.intervalSec;
        continue;
      }
      throw new ConsentError(
        step.reason === 'denied'
          ? 'the request was denied at the provider (access_denied): nothing was stored'
          : step.reason === 'expired'
            ? 'the device code expired before it was approved (expired_token): run seed --device again'
            : `the provider refused the device code: ${err.message}`,
        { cause: err },
      );
    }
  }
  throw new ConsentError(
    `no approval within ${Math.round((deadline - started) / 1000)} s: nothing was stored; run seed --device again`,
  );
}
