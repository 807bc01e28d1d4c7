import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { importJWK, SignJWT } from 'jose';
import { fetch } from 'undici';

/**
 * A real authorization server (oidc-provider) on loopback for end-to-end tests. Login and consent are
 * answered by this harness's own /interaction routes, and driveConsent() plays the user's browser.
 */

export interface OidcTestClient {
  clientId: string;
  clientSecret?: string;
  redirectUris: string[];
  authMethod?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';
  /** The public keys a private_key_jwt client signs its assertions with. */
  jwks?: { keys: Array<Record<string, unknown>> };
  applicationType?: 'web' | 'native';
  /** Default authorization_code and refresh_token. */
  grantTypes?: string[];
}

export interface OidcServerOptions {
  /** Default 5 s, so tests see expiry quickly. */
  accessTokenTtlSec?: number;
  /** Default 14 days. */
  refreshTokenTtlSec?: number;
  /** Rotate the refresh token on every use; default true. */
  rotateRefreshToken?: boolean;
  clients?: OidcTestClient[];
  /** Claims per account id over the defaults (sub, email, preferred_username = the id), e.g. a name
   * another account also uses. */
  accountClaims?: Record<string, Record<string, unknown>>;
  /** Put the scopes' claims in the id_token as well as in userinfo (oidc-provider's conformIdTokenClaims off). */
  claimsInIdToken?: boolean;
  /** Offer RFC 8628 device-code consent (its endpoint at /device/auth, the user's page at /device). */
  deviceFlow?: boolean;
  /** Enable the client_credentials grant; its tokens live `accessTokenTtlSec` too. */
  clientCredentials?: boolean;
}

export interface OidcCounters {
  /** Successful refresh_token grants. */
  refreshes: number;
  /** Grants revoked, e.g. after a spent refresh token was replayed. */
  grantsRevoked: number;
  /** Refresh requests that presented an already consumed refresh token. */
  reuseDetected: number;
  /** Client assertions (private_key_jwt) the server accepted, each a jti it had not seen. */
  assertionsAccepted: number;
  /** Successful client_credentials grants. */
  clientCredentials: number;
  /** Token requests refused, by OAuth error code. */
  errors: Record<string, number>;
}

export interface OidcServer {
  issuer: string;
  url(path: string): string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  introspectionEndpoint: string;
  revocationEndpoint: string;
  jwksUri: string;
  /** Signs a JWT with the server's own id_token key (RS256, its kid): a token it could have issued. */
  signWithServerKey(payload: Record<string, unknown>): Promise<string>;
  /** The effective client list (the default client with its generated secret when none was given). */
  clients: OidcTestClient[];
  introspect(token: string): Promise<{ active: boolean; [k: string]: unknown }>;
  /**
   * Acts as the user's browser: follows redirects with a cookie jar through login and consent and returns
   * the final redirect to the client's redirect_uri (not fetched), carrying ?code&state or ?error.
   */
  driveConsent(authorizationUrl: string, opts?: { deny?: boolean; accountId?: string }): Promise<URL>;
  /**
   * Acts as the person at a device-flow verification page: opens `verification_uri_complete`,
   * confirms the code (or aborts there with `abortCode`), then logs in and consents (or denies);
   * returns the page it ended on.
   */
  driveDeviceConsent(
    verificationUriComplete: string,
    opts?: { deny?: boolean; abortCode?: boolean; accountId?: string },
  ): Promise<URL>;
  deviceAuthorizationEndpoint: string;
  counters: OidcCounters;
  close(): Promise<void>;
}

export const DEFAULT_REDIRECT_URI = 'http://127.0.0.1:53682/callback';
const DEFAULT_ACCOUNT_ID = 'test-user';
const DAY_SEC = 24 * 60 * 60;

// oidc-provider ships no type declarations (@types/oidc-provider is not installed), so it is loaded by a
// non-literal specifier and the little used here is described below.
const OIDC_PROVIDER_MODULE: string = 'oidc-provider';

interface OidcGrant {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

interface InteractionDetails {
  uid: string;
  grantId?: string;
  params: Record<string, unknown>;
  prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
  session?: { accountId?: string };
}

interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    opts?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  Grant: {
    new (props: { accountId: string; clientId: string }): OidcGrant;
    find(id: string): Promise<OidcGrant | undefined>;
  };
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;

interface ProviderContext {
  oidc?: { params?: Record<string, unknown> };
}

let providerClass: Promise<ProviderConstructor> | undefined;

function loadProvider(): Promise<ProviderConstructor> {
  providerClass ??= (async () => {
    // On import it warns that Node 20 is not its supported LTS; the tests run on it on purpose.
    const warn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (!String(args[0]).startsWith('oidc-provider WARNING')) warn(...args);
    };
    try {
      const mod = (await import(OIDC_PROVIDER_MODULE)) as { Provider: ProviderConstructor };
      return mod.Provider;
    } finally {
      console.warn = warn;
    }
  })();
  return providerClass;
}

export async function startOidcServer(opts: OidcServerOptions = {}): Promise<OidcServer> {
  const Provider = await loadProvider();
  const clients: OidcTestClient[] = opts.clients ?? [
    {
      clientId: 'gk-test',
      clientSecret: `gk-test-client-secret-${randomBytes(12).toString('base64url')}`,
      redirectUris: [DEFAULT_REDIRECT_URI],
      authMethod: 'client_secret_basic',
    },
  ];
  // The resource server that introspects tokens on the harness's behalf.
  const introspector = { clientId: 'gk-introspector', clientSecret: randomBytes(24).toString('base64url') };

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const counters: OidcCounters = {
    refreshes: 0,
    grantsRevoked: 0,
    reuseDetected: 0,
    assertionsAccepted: 0,
    clientCredentials: 0,
    errors: {},
  };
  const accessTokenTtl = opts.accessTokenTtlSec ?? 5;
  const refreshTokenTtl = opts.refreshTokenTtlSec ?? 14 * DAY_SEC;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = {
    ...privateKey.export({ format: 'jwk' }),
    kid: 'gk-test-rs256',
    alg: 'RS256',
    use: 'sig',
  };

  const provider = new Provider(issuer, {
    adapter: memoryAdapterFactory(() => counters.assertionsAccepted++),
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clients: [
      ...clients.map((c) => ({
        client_id: c.clientId,
        ...(c.clientSecret === undefined ? {} : { client_secret: c.clientSecret }),
        redirect_uris: c.redirectUris,
        token_endpoint_auth_method: c.authMethod ?? 'client_secret_basic',
        ...(c.jwks ? { jwks: c.jwks } : {}),
        application_type: c.applicationType ?? 'web',
        grant_types: c.grantTypes ?? [
          'authorization_code',
          'refresh_token',
          ...(opts.deviceFlow ? ['urn:ietf:params:oauth:grant-type:device_code'] : []),
        ],
        response_types: (c.grantTypes ?? ['authorization_code']).includes('authorization_code')
          ? ['code']
          : [],
      })),
      {
        client_id: introspector.clientId,
        client_secret: introspector.clientSecret,
        redirect_uris: [],
        grant_types: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'] },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    conformIdTokenClaims: !opts.claimsInIdToken,
    findAccount: (_ctx: unknown, sub: string) => ({
      accountId: sub,
      claims: async () => ({
        email: `${sub}@example.test`,
        email_verified: true,
        preferred_username: sub,
        ...opts.accountClaims?.[sub],
        // The subject is the account id whatever else is claimed.
        sub,
      }),
    }),
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: opts.deviceFlow ?? false,
        // Bare pages (the defaults print a notice each): the forms oidc-provider builds, and the end.
        userCodeInputSource: (ctx: HtmlContext, form: string, _out: unknown, err?: Error) => {
          ctx.body = `<!doctype html><p>${err ? 'error' : 'enter the code'}</p>${form}`;
        },
        userCodeConfirmSource: (ctx: HtmlContext, form: string) => {
          ctx.body = `<!doctype html><p>confirm the code</p>${form}`;
        },
        successSource: (ctx: HtmlContext) => {
          ctx.body = '<!doctype html><p>done: you may close this window</p>';
        },
      },
      clientCredentials: { enabled: opts.clientCredentials === true },
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: ClientLike, token: TokenLike) =>
          client.clientId === introspector.clientId || token.clientId === client.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: ClientLike, token: TokenLike) =>
          token.clientId === client.clientId,
      },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    rotateRefreshToken: opts.rotateRefreshToken ?? true,
    issueRefreshToken: async (_ctx: unknown, client: ClientLike, code: { scopes: Set<string> }) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: DAY_SEC,
      RefreshToken: refreshTokenTtl,
      DeviceCode: 600,
      // A grant must outlive every refresh token issued under it.
      Grant: refreshTokenTtl + DAY_SEC,
    },
    clientBasedCORS: () => false,
    renderError: async (ctx: { type: string; body: unknown }, out: Record<string, unknown>) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  provider.on('grant.success', (ctx) => {
    const grantType = (ctx as ProviderContext).oidc?.params?.grant_type;
    if (grantType === 'refresh_token') counters.refreshes++;
    if (grantType === 'client_credentials') counters.clientCredentials++;
  });
  provider.on('grant.revoked', () => {
    counters.grantsRevoked++;
  });
  provider.on('grant.error', (_ctx, err) => {
    const code = (err as { error?: string }).error ?? 'unknown';
    counters.errors[code] = (counters.errors[code] ?? 0) + 1;
    // The refresh_token grant throws this detail right after it revoked the whole grant for a replay.
    if ((err as { error_detail?: string }).error_detail === 'refresh token already used')
      counters.reuseDetected++;
  });
  provider.on('server_error', (_ctx, err) => {
    console.error('oidc-provider server_error', err);
  });

  const providerCallback = provider.callback();
  handler = (req, res) => {
    const match = /^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/.exec(
      new URL(req.url ?? '/', issuer).pathname,
    );
    if (!match) {
      providerCallback(req, res);
      return;
    }
    handleInteraction(provider, req, res, match[2]).catch((err: unknown) => {
      sendJson(res, 400, { error: 'interaction_failed', error_description: String(err) });
    });
  };

  const url = (path: string) => new URL(path, issuer).href;
  const introspectionEndpoint = url('/token/introspection');

  return {
    issuer,
    url,
    authorizationEndpoint: url('/auth'),
    tokenEndpoint: url('/token'),
    introspectionEndpoint,
    revocationEndpoint: url('/token/revocation'),
    jwksUri: url('/jwks'),
    signWithServerKey: async (payload) =>
      new SignJWT(payload)
        .setProtectedHeader({ alg: 'RS256', kid: signingKey.kid })
        .sign(await importJWK(signingKey, 'RS256')),
    clients,
    counters,
    async introspect(token) {
      const res = await fetch(introspectionEndpoint, {
        method: 'POST',
        headers: {
          authorization: basicAuth(introspector.clientId, introspector.clientSecret),
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ token }).toString(),
      });
      if (!res.ok) throw new Error(`introspection failed: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()) as { active: boolean; [k: string]: unknown };
    },
    driveConsent: (authorizationUrl, driveOpts = {}) => driveConsent(issuer, authorizationUrl, driveOpts),
    driveDeviceConsent: (verificationUri, driveOpts = {}) => driveConsent(issuer, verificationUri, driveOpts),
    deviceAuthorizationEndpoint: url('/device/auth'),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

interface HtmlContext {
  body: string;
}

interface ClientLike {
  clientId: string;
  grantTypeAllowed(type: string): boolean;
}

interface TokenLike {
  clientId?: string;
}

/** The user revokes access at the provider: RFC 7009 revocation of a refresh token, as its client. */
export async function revokeRefreshToken(oidc: OidcServer, refreshToken: string): Promise<number> {
  const client = oidc.clients[0];
  if (!client?.clientSecret) throw new Error('revokeRefreshToken needs a confidential client');
  const res = await fetch(oidc.revocationEndpoint, {
    method: 'POST',
    headers: {
      authorization: basicAuth(client.clientId, client.clientSecret),
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token' }).toString(),
  });
  await res.body?.cancel();
  return res.status;
}

/** RFC 6749 §2.3.1: both parts form-encoded before base64. */
export function basicAuth(clientId: string, clientSecret: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`;
}

/** The harness's login and consent "pages": GET describes the prompt, POSTs answer it. */
async function handleInteraction(
  provider: OidcProvider,
  req: IncomingMessage,
  res: ServerResponse,
  action: string | undefined,
): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && action === undefined) {
    // A real browser gets forms to click through; driveConsent() reads the prompt as JSON.
    if (req.headers.accept?.includes('text/html')) {
      sendHtml(res, interactionPage(details.uid, details.prompt.name));
      return;
    }
    sendJson(res, 200, { uid: details.uid, prompt: details.prompt, params: details.params });
    return;
  }
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: 'method_not_allowed' });
    return;
  }
  const form = new URLSearchParams(await readBody(req));

  if (action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'End-User aborted interaction' },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  if (action === 'login') {
    const accountId = form.get('accountId') || DEFAULT_ACCOUNT_ID;
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId } },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  // Consent: grant everything that was asked for, openid and offline_access included.
  const accountId = details.session?.accountId;
  if (!accountId) throw new Error('consent without a logged-in account');
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant = existing ?? new provider.Grant({ accountId, clientId: String(details.params.client_id) });
  const missing = details.prompt.details as {
    missingOIDCScope?: string[];
    missingOIDCClaims?: string[];
    missingResourceScopes?: Record<string, string[]>;
  };
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { consent: existing ? {} : { grantId } },
    { mergeWithLastSubmission: true },
  );
}

/** The login form (an account id to sign in as) or the consent form (allow / deny). */
function interactionPage(uid: string, prompt: string): string {
  const base = `/interaction/${uid}`;
  const form =
    prompt === 'login'
      ? `<form method="post" action="${base}/login"><input name="accountId" aria-label="account"><button id="sign-in" type="submit">Sign in</button></form>`
      : `<form method="post" action="${base}/confirm"><button id="allow" type="submit">Allow</button></form>` +
        `<form method="post" action="${base}/abort"><button id="deny" type="submit">Deny</button></form>`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>${prompt}</title></head><body><h1>${prompt}</h1>${form}</body></html>`;
}

function sendHtml(res: ServerResponse, html: string): void {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(html);
}

async function driveConsent(
  issuer: string,
  authorizationUrl: string,
  opts: { deny?: boolean; abortCode?: boolean; accountId?: string },
): Promise<URL> {
  const jar = new CookieJar();
  const issuerOrigin = new URL(issuer).origin;
  let next = new URL(authorizationUrl);
  let form: URLSearchParams | undefined;

  for (let hop = 0; hop < 20; hop++) {
    if (next.origin !== issuerOrigin) return next;
    const res = await fetch(next, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        cookie: jar.header(next),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      body: form?.toString(),
    });
    jar.store(next, res.headers.getSetCookie());
    form = undefined;

    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      await res.body?.cancel();
      next = new URL(location, next);
      continue;
    }
    const body = await res.text();
    // oidc-provider's own device pages: an auto-posting form, then the confirmation form.
    if (res.status === 200 && res.headers.get('content-type')?.startsWith('text/html')) {
      const page = htmlForm(body);
      if (!page) return next; // the device flow's last page ("you may close this window")
      next = new URL(page.action, next);
      form = page.fields;
      if (opts.abortCode && form.has('confirm')) {
        form.delete('confirm');
        form.set('abort', 'yes');
      }
      continue;
    }
    const uid = /^\/interaction\/([\w-]+)$/.exec(next.pathname)?.[1];
    if (res.status !== 200 || !uid) {
      throw new Error(
        `driveConsent: unexpected HTTP ${res.status} from ${next.pathname}: ${body.slice(0, 300)}`,
      );
    }
    const prompt = (JSON.parse(body) as { prompt: { name: string } }).prompt.name;
    if (prompt === 'login') {
      next = new URL(`/interaction/${uid}/login`, issuer);
      form = new URLSearchParams({ accountId: opts.accountId ?? DEFAULT_ACCOUNT_ID });
    } else if (prompt === 'consent') {
      next = new URL(`/interaction/${uid}/${opts.deny ? 'abort' : 'confirm'}`, issuer);
      form = new URLSearchParams();
    } else {
      throw new Error(`driveConsent: unsupported prompt ${prompt}`);
    }
  }
  throw new Error('driveConsent: too many redirects');
}

/** The first POST form of a page and its hidden fields, as a browser would submit it. */
function htmlForm(html: string): { action: string; fields: URLSearchParams } | undefined {
  const form = /<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  // The code-entry form (after an abort or a bad code) waits for typing: the end of the drive.
  if (!form || !/name="user_code" value=/.test(form[2] ?? '')) return undefined;
  const decode = (v: string) =>
    v
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&');
  const fields = new URLSearchParams();
  for (const input of (form[2] ?? '').matchAll(/<input[^>]*type="hidden"[^>]*>/gi)) {
    const name = /name="([^"]*)"/.exec(input[0])?.[1];
    const value = /value="([^"]*)"/.exec(input[0])?.[1] ?? '';
    if (name) fields.set(name, decode(value));
  }
  return { action: decode(form[1] ?? ''), fields };
}

/** Just enough of a browser cookie jar: name, path scoping, deletion by expiry. */
class CookieJar {
  readonly #cookies = new Map<string, { name: string; value: string; path: string }>();

  store(from: URL, setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair = '', ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = from.pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = value === '';
      for (const attr of attrs) {
        const [key = '', val = ''] = attr.split('=');
        const k = key.toLowerCase();
        if (k === 'path') path = val || '/';
        if (k === 'expires' && Date.parse(val) <= Date.now()) expired = true;
        if (k === 'max-age' && Number(val) <= 0) expired = true;
      }
      const id = `${name};${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { name, value, path });
    }
  }

  header(to: URL): string {
    return [...this.#cookies.values()]
      .filter(
        (c) => to.pathname === c.path || to.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`),
      )
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', 'no-store');
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

interface Stored {
  payload: Record<string, unknown>;
  expiresAt: number;
}

/**
 * Per-server in-memory storage (oidc-provider's own memory adapter is shared process-wide and warns).
 * Tokens are indexed by grant so a revoked grant takes its tokens with it.
 */
function memoryAdapterFactory(onReplayRecord: () => void): (model: string) => unknown {
  const entries = new Map<string, Stored>();
  const byGrant = new Map<string, Set<string>>();
  const lookups = new Map<string, string>();

  const live = (key: string): Stored | undefined => {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };

  return (model: string) => {
    const key = (id: string) => `${model}:${id}`;
    return {
      async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
        // oidc-provider records each accepted assertion's jti here, refusing one it finds.
        if (model === 'ReplayDetection') onReplayRecord();
        const expiresAt =
          typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
        entries.set(key(id), { payload, expiresAt });
        if (typeof payload.grantId === 'string') {
          const members = byGrant.get(payload.grantId) ?? new Set<string>();
          members.add(key(id));
          byGrant.set(payload.grantId, members);
        }
        if (typeof payload.uid === 'string') lookups.set(`uid:${payload.uid}`, id);
        if (typeof payload.userCode === 'string') lookups.set(`userCode:${payload.userCode}`, id);
      },
      async find(id: string) {
        return live(key(id))?.payload;
      },
      async findByUid(uid: string) {
        const id = lookups.get(`uid:${uid}`);
        return id === undefined ? undefined : live(key(id))?.payload;
      },
      async findByUserCode(userCode: string) {
        const id = lookups.get(`userCode:${userCode}`);
        return id === undefined ? undefined : live(key(id))?.payload;
      },
      async consume(id: string) {
        const entry = live(key(id));
        if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id: string) {
        entries.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        const members = byGrant.get(grantId);
        for (const member of members ?? []) {
          if (!member.startsWith(`${model}:`)) continue;
          entries.delete(member);
          members?.delete(member);
        }
      },
    };
  };
}
