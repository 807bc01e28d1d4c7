import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type RefresherRig, startRefresherRig } from '../support/refresher.js';

const OLD = 'client-secret-value';
const NEW = 'rotated-secret-value';

/** The secret HTTP Basic carried in a recorded request. */
function secretOf(request: FaultEndpoint['requests'][number]): string {
  const pair = Buffer.from(String(request.headers.authorization).slice('Basic '.length), 'base64').toString();
  return decodeURIComponent(pair.slice(pair.indexOf(':') + 1));
}

describe('client secret rotation: newest first, the old one as a fallback on invalid_client', () => {
  let endpoint: FaultEndpoint;
  let rig: RefresherRig;

  beforeAll(async () => {
    endpoint = await startFaultEndpoint();
    rig = await startRefresherRig(endpoint);
    const rotated = await rig.clients.rotateSecret(rig.clientRef, {
      secret: NEW,
      expiresAt: null,
      now: Date.now(),
    });
    expect(rotated?.secret.previous).not.toBeNull();
  });

  afterAll(async () => {
    await rig?.close();
    await endpoint?.close();
  });

  /** Refreshes a fresh grant; returns its result and the secrets the requests presented, in order. */
  async function refreshOnce() {
    const grant = await rig.seed();
    const from = endpoint.requests.length;
    const result = await rig.refresher.refresh(grant.id, 0, 'schedule');
    const stored = (await rig.grants.get(grant.id))!.grant;
    return { result, stored, secrets: endpoint.requests.slice(from).map(secretOf) };
  }

  it('only the old secret accepted: the refresh succeeds after one fallback, and says which worked', async () => {
    endpoint.acceptClientSecrets([OLD]);
    const first = await refreshOnce();
    expect(first.result.status).toBe('refreshed');
    expect(first.secrets).toEqual([NEW, OLD]);
    expect((await rig.clients.get(rig.clientRef))?.secret.inUse).toBe('previous');
    expect(rig.logs.some((l) => String(l.msg).startsWith('the newest client secret was refused'))).toBe(true);
    // The next one still tries the newest first: it may have been fixed at the provider meanwhile.
    const second = await refreshOnce();
    expect(second.result.status).toBe('refreshed');
    expect(second.secrets).toEqual([NEW, OLD]);
  });

  it('only the new secret accepted: one request, and the record moves to the current secret', async () => {
    endpoint.acceptClientSecrets([NEW]);
    const { result, secrets } = await refreshOnce();
    expect(result.status).toBe('refreshed');
    expect(secrets).toEqual([NEW]);
    expect((await rig.clients.get(rig.clientRef))?.secret.inUse).toBe('current');
  });

  it('neither accepted: every secret is tried once, then the grant ends client_error', async () => {
    endpoint.acceptClientSecrets(['something-else']);
    const { result, stored, secrets } = await refreshOnce();
    expect(result.status).not.toBe('refreshed');
    expect(secrets).toEqual([NEW, OLD]);
    expect(stored.state).toBe('client_error');
    expect(stored.lastError).toMatch(/invalid_client/);
    // No request named a secret in its log lines.
    expect(JSON.stringify(rig.logs)).not.toContain(NEW);
    expect(JSON.stringify(rig.logs)).not.toContain(OLD);
  });

  it('after retiring the old secret only the new one is sent', async () => {
    endpoint.acceptClientSecrets([NEW]);
    await rig.clients.retireSecret(rig.clientRef, Date.now());
    endpoint.acceptClientSecrets([OLD]);
    const { result, secrets } = await refreshOnce();
    expect(secrets).toEqual([NEW]);
    expect(result.status).not.toBe('refreshed');
  });
});
