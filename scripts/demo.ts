/**
 * `npm run demo`: the whole loop in under a minute, with no provider account. A local authorization
 * server (oidc-provider, 10-second access tokens, rotating refresh tokens) stands in for X or Google;
 * a client is registered, one grant is seeded with the consent clicked through automatically, and
 * the service refreshes it live. Stops by itself after 45 s (or on Ctrl-C) and removes what it made.
 */

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import pc from 'picocolors';
import { fetch } from 'undici';
import { configSchema } from '../src/config/config-schema.js';
import { seedGrant } from '../src/consent/seed-grant.js';
import { createLogger } from '../src/log/logger.js';
import { resolveProvider } from '../src/oauth/providers.js';
import { describeRedisEndpoint } from '../src/redis/redis-endpoint.js';
import { consentDeps } from '../src/service/refresh-engine.js';
import { startRefreshService } from '../src/service/refresh-service.js';
import { startOidcServer } from '../test/support/oidc-server.js';

const RUN_FOR_MS = 45_000;
const say = (line: string) =>
  process.stdout.write(`${pc.dim(new Date().toISOString().slice(11, 19))} ${line}\n`);

const dataDir = mkdtempSync(join(tmpdir(), 'grantkeeper-demo-'));
const secret = randomBytes(24).toString('base64url');
const oidc = await startOidcServer({
  accessTokenTtlSec: 10,
  clients: [
    {
      clientId: 'demo-app',
      clientSecret: secret,
      redirectUris: ['http://127.0.0.1/callback'],
      applicationType: 'native',
    },
  ],
});
say(`authorization server (oidc-provider) at ${oidc.issuer}, access tokens live 10 s`);

const loaded = {
  config: configSchema.parse({ dataDir, reconcileIntervalSeconds: 5, logLevel: 'warn' }),
  secrets: { key: randomBytes(32).toString('base64') },
};
const service = await startRefreshService(loaded, createLogger({ level: 'warn' }), { env: {} });
say(`service running: data in ${dataDir}, its own redis-server at ${describeRedisEndpoint(service.redis)}`);

let stopping = false;
async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(watch);
  clearTimeout(deadline);
  await service.stop().catch(() => {});
  await oidc.close().catch(() => {});
  rmSync(dataDir, { recursive: true, force: true });
  say(
    code === 0
      ? 'stopped; temporary data removed. Next: see README "From client add to a running service".'
      : 'failed',
  );
  process.exit(code);
}
process.once('SIGINT', () => void stop(0));
process.once('SIGTERM', () => void stop(0));
const deadline = setTimeout(() => void stop(0), RUN_FOR_MS);
let watch: NodeJS.Timeout | undefined;

try {
  const { app, engine } = service;
  await app.clients.upsert({
    name: 'demo',
    profile: await resolveProvider({ kind: 'oidc', issuer: oidc.issuer }),
    clientId: 'demo-app',
    clientSecret: secret,
    authMethod: 'client_secret_basic',
    scopes: ['openid', 'email'],
    redirectUri: 'http://127.0.0.1/callback',
    now: Date.now(),
  });
  say(
    'registered client "demo" (grantkeeper client add demo --provider oidc --issuer … --client-id demo-app …)',
  );

  const messages = new PassThrough();
  messages.resume();
  const result = await seedGrant(
    {
      ...consentDeps(engine),
      io: {
        messages,
        input: new PassThrough(),
        // Plays the person in the browser: sign in, consent, follow the redirect to the loopback listener.
        openBrowser: async (url) => {
          say('consent page opened; signing in and clicking "allow" automatically');
          void oidc.driveConsent(url).then((redirect) => fetch(redirect));
        },
      },
    },
    { client: 'demo', mode: 'loopback', timeoutMs: 15_000 },
  );
  say(
    `${pc.green('seeded')} grant ${pc.bold(result.grant.label)}: tokens sealed in SQLite, first refresh queued`,
  );
  say('watching refreshes (each one rotates the refresh token; Ctrl-C to stop early)…');

  let version = result.grant.version;
  watch = setInterval(async () => {
    const grant = (await app.grants.get(result.grant.id).catch(() => undefined))?.grant;
    if (!grant || grant.version === version) return;
    version = grant.version;
    const left = Math.round((grant.accessExpiresAt - Date.now()) / 1000);
    const next = Math.max(0, Math.round((grant.nextRefreshAt - Date.now()) / 1000));
    say(
      `${pc.green('refreshed')} ${grant.label} v${grant.version} (${grant.state}): access token good for ${left} s, next refresh in ${next} s`,
    );
  }, 250);
} catch (err) {
  say(pc.red(`demo failed: ${(err as Error).message}`));
  await stop(1);
}
