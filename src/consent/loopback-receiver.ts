import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';
import { isLoopbackHost } from '../oauth/token-client.js';
import { escapeHtml } from '../util/html.js';
import { ConsentError, carriesState, codeFromCallback } from './callback.js';

export interface LoopbackTarget {
  /** The address to bind, brackets removed for IPv6. */
  host: string;
  /** 0 when the redirect URI names no port: RFC 8252 §7.3 servers accept any port on loopback. */
  port: number;
  path: string;
}

/** Refuses anything but a plain-http loopback redirect: the code must not travel off this machine. */
export function loopbackTarget(redirectUri: string): LoopbackTarget {
  let url: URL;
  try {
    url = new URL(redirectUri);
  } catch {
    throw new GrantkeeperError('consent_failed', `the redirect URI ${redirectUri} is not a valid URL`);
  }
  if (url.protocol !== 'http:' || !isLoopbackHost(url.hostname)) {
    throw new GrantkeeperError(
      'consent_failed',
      `the redirect URI ${url.origin}${url.pathname} is not an http loopback address (127.0.0.1, [::1] or localhost); ` +
        'use --manual to paste the redirect back instead',
    );
  }
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 0), path: url.pathname };
}

/** The one valid callback; `reply` answers the waiting browser tab once the grant is stored (or not). */
export interface ReceivedCallback {
  code: string;
  reply(outcome: { ok: boolean; message: string }): Promise<void>;
}

export interface LoopbackReceiver {
  /** The redirect URI actually listened on (an ephemeral port filled in). */
  redirectUri: string;
  callback: Promise<ReceivedCallback>;
  close(): Promise<void>;
}

const STRAY_CALLBACK =
  'This request carries no state, or a state that does not match the sign-in grantkeeper is waiting for, so it was ignored. ' +
  'If you are signing in, finish in the tab grantkeeper opened (or run seed again).';

/**
 * A one-shot HTTP listener for the authorization redirect (RFC 8252 §7.3): bound only to the
 * redirect URI's host and port, it accepts one callback carrying our state, answers the browser
 * with a short page and never logs the code. Requests without our state are answered 400 and
 * ignored; with it, an error, a missing code, a redirect to another path or the timeout rejects.
 * close() always releases the port.
 */
export async function startLoopbackReceiver(
  redirectUri: string,
  opts: { state: string; timeoutMs: number },
): Promise<LoopbackReceiver> {
  const target = loopbackTarget(redirectUri);
  let settle: { resolve(c: ReceivedCallback): void; reject(e: Error): void } | undefined;
  const callback = new Promise<ReceivedCallback>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // The caller may close before awaiting (e.g. the browser failed to open); no unhandled rejection then.
  callback.catch(() => {});
  // `received`: a callback reached the path (later ones are turned away); `settled`: the outcome is fixed.
  let received = false;
  let settled = false;
  const finish = (fn: () => void) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    fn();
  };
  const fail = (res: ServerResponse, message: string, error: Error) =>
    void page(res, 400, false, message).then(() => finish(() => settle?.reject(error)));

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://loopback');
    if (req.method !== 'GET')
      return void page(res, 405, false, 'Only the browser redirect is expected here.');
    if (!carriesState(url.searchParams, opts.state)) {
      // A stale tab, a port probe or a forged request from another local page: turned away without
      // ending the capture, which goes on waiting for the real redirect.
      if (url.pathname !== target.path) return void page(res, 404, false, 'Not found.');
      return void page(res, 400, false, STRAY_CALLBACK);
    }
    if (received || settled) {
      return void page(res, 409, false, 'This sign-in was already received. You can close this tab.');
    }
    received = true;
    if (url.pathname !== target.path) {
      // Our state on another path: the redirect URI registered at the provider differs from ours.
      const message =
        `the provider redirected to ${url.pathname}, but grantkeeper listens on ${target.path}: ` +
        'the redirect URI registered for the app must be exactly the client redirect URI';
      return fail(res, message, new ConsentError(message));
    }
    let code: string;
    try {
      code = codeFromCallback(url.searchParams, opts.state);
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      return fail(res, error.message, error);
    }
    finish(() =>
      settle?.resolve({ code, reply: ({ ok, message }) => page(res, ok ? 200 : 400, ok, message) }),
    );
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const where = `${target.host}:${target.port}`;
      reject(
        new GrantkeeperError(
          'address_unavailable',
          err.code === 'EADDRINUSE'
            ? `cannot listen on ${where} for the consent redirect: the port is in use (another seed running?)`
            : `cannot listen on ${where} for the consent redirect: ${err.code ?? err.message}`,
        ),
      );
    });
    server.listen(target.port, target.host, () => resolve());
  });
  const timer = setTimeout(
    () =>
      finish(() =>
        settle?.reject(
          new ConsentError(
            `no consent redirect arrived within ${Math.round(opts.timeoutMs / 1000)} s; run seed again (or raise --timeout)`,
          ),
        ),
      ),
    opts.timeoutMs,
  );

  const actual = new URL(redirectUri);
  actual.port = String((server.address() as AddressInfo).port);
  return {
    redirectUri: actual.href,
    callback,
    close: () =>
      new Promise<void>((resolve) => {
        clearTimeout(timer);
        finish(() => settle?.reject(new ConsentError('consent capture was cancelled')));
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A short page for the person in the browser; resolves once it has been sent. */
function page(
  res: ServerResponse<IncomingMessage>,
  status: number,
  ok: boolean,
  message: string,
): Promise<void> {
  const title = ok ? 'grantkeeper: access granted' : 'grantkeeper: consent not completed';
  const body =
    `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
    `<body style="font-family:sans-serif;max-width:40em;margin:4em auto"><h1>${ok ? 'Done' : 'Not completed'}</h1>` +
    `<p>${escapeHtml(message)}</p><p>You can close this tab and return to the terminal.</p></body></html>`;
  return new Promise((resolve) => {
    res.once('close', () => resolve());
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
      connection: 'close',
    });
    res.end(body);
  });
}
