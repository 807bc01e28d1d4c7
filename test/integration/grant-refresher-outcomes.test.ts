import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type RefresherRig, startRefresherRig } from '../support/refresher.js';

/**
 * One refresh at a time on a real SQLite file against the fault endpoint: what each outcome leaves
 * in the row, the event log and the log lines (invariants 2, 3, 5 and 8).
 */
describe('grant refresher outcomes', () => {
  let endpoint: FaultEndpoint;
  let rig: RefresherRig;

  beforeEach(async () => {
    endpoint = await startFaultEndpoint();
  });

  afterEach(async () => {
    await rig?.close();
    await endpoint.close();
  });

  const requestsFor = (rt: string) => endpoint.requests.filter((r) => r.form.refresh_token === rt).length;
  const rowOf = async (id: string) => (await rig.grants.get(id))!.grant;
  const tokensOf = async (id: string) => {
    const { tokens } = (await rig.grants.get(id))!;
    return { accessToken: tokens.accessToken(), refreshToken: tokens.refreshToken() };
  };
  const lastOutcome = async (id: string) => (await rig.grants.recentEvents(id, 1))[0]?.outcome;

  it('does not send with no more than the request timeout left on its lease', async () => {
    rig = await startRefresherRig(endpoint, { leaseMs: 1000, timeoutMs: 1000 });
    const grant = await rig.seed();
    const result = await rig.refresher.refresh(grant.id, 0, 'schedule');
    expect(result.status).toBe('lease_lost');
    expect(endpoint.requests).toHaveLength(0);
    expect(await rowOf(grant.id)).toMatchObject({ version: 0, leaseOwner: null, leaseSentAt: null });
  });

  it('holds a grant whose answer was lost in doubt: nobody sends its refresh token again before the grace', async () => {
    rig = await startRefresherRig(endpoint, { timeoutMs: 300, inDoubtGraceMs: 60_000 });
    const grant = await rig.seed();
    const { refreshToken } = await tokensOf(grant.id);
    endpoint.push({ type: 'hang' });
    const first = await rig.refresher.refresh(grant.id, 0, 'schedule');
    expect(first).toMatchObject({ status: 'retrying', inDoubt: true });
    const row = await rowOf(grant.id);
    expect(row.leaseSentAt).not.toBeNull();
    expect(row.lastError).toMatch(/in doubt/);
    expect(await lastOutcome(grant.id)).toBe('in_doubt');
    const second = await rig.refresher.refresh(grant.id, 0, 'on_demand');
    expect(second.status).toBe('in_doubt');
    if (second.status === 'in_doubt') expect(second.retryAt).toBeGreaterThan(Date.now() + 50_000);
    expect(requestsFor(refreshToken)).toBe(1);
  });

  it('retries a lost answer at once where old refresh tokens stay valid', async () => {
    rig = await startRefresherRig(endpoint, { timeoutMs: 300, profile: { oldRefreshTokensStayValid: true } });
    const grant = await rig.seed();
    endpoint.push({ type: 'hang' });
    expect(await rig.refresher.refresh(grant.id, 0, 'schedule')).toMatchObject({
      status: 'retrying',
      inDoubt: false,
    });
    expect((await rowOf(grant.id)).leaseSentAt).toBeNull();
    expect((await rig.refresher.refresh(grant.id, 0, 'on_demand')).status).toBe('refreshed');
  });

  it('stores a late answer for a grant stopped meanwhile without reviving it', async () => {
    rig = await startRefresherRig(endpoint);
    const grant = await rig.seed();
    endpoint.push({ type: 'rotate', latencyMs: 400 });
    const pending = rig.refresher.refresh(grant.id, 0, 'schedule');
    await waitFor(() => endpoint.requests.length === 1, 'the request sent');
    // As another holder's verdict after the grace would: the refresh token was refused as spent.
    rig.raw
      .prepare(`update grants set state = 'needs_reconsent', last_error = 'refused as spent' where id = ?`)
      .run(grant.id);
    const result = await pending;
    expect(result.status).toBe('conflict');
    const row = await rowOf(grant.id);
    expect(row).toMatchObject({ state: 'needs_reconsent', lastError: 'refused as spent', version: 1 });
    // The answer's tokens are kept: they may be the live ones.
    expect(endpoint.isAccessTokenValid((await tokensOf(grant.id)).accessToken)).toBe(true);
    expect(await lastOutcome(grant.id)).toBe('conflict');
    expect(rig.logs.some((l) => l.level === 50 && String(l.msg).includes('stopped meanwhile'))).toBe(true);
  });

  it('stores the rotated refresh token of an answer whose access token is unusable', async () => {
    rig = await startRefresherRig(endpoint);
    const grant = await rig.seed();
    const before = await tokensOf(grant.id);
    endpoint.push({ type: 'rotate', corruptAccessToken: true });
    const result = await rig.refresher.refresh(grant.id, 0, 'schedule');
    expect(result.status).toBe('retrying');
    const row = await rowOf(grant.id);
    expect(row).toMatchObject({ version: 1, state: 'failing' });
    const stored = await tokensOf(grant.id);
    expect(stored.accessToken).toBe(before.accessToken);
    expect(stored.refreshToken).not.toBe(before.refreshToken);
    expect(row.lastError).toMatch(/not visible ASCII/);
    // The next refresh uses the stored (rotated) token: no replay, the grant lives on.
    expect((await rig.refresher.refresh(grant.id, 1, 'schedule')).status).toBe('refreshed');
    expect(endpoint.reuseDetections).toBe(0);
    for (const t of Object.values(await tokensOf(grant.id))) {
      expect(t).toMatch(/^[\x20-\x7e]+$/);
    }
  });

  it('stops a grant whose sealed tokens no longer open as broken, with the reason', async () => {
    rig = await startRefresherRig(endpoint);
    const grant = await rig.seed();
    rig.raw
      .prepare('update grants set refresh_token_sealed = ? where id = ?')
      .run('gk1.kdeadbeef00.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA', grant.id);
    const result = await rig.refresher.refresh(grant.id, 0, 'schedule');
    expect(result.status).toBe('broken');
    const row = await rowOf(grant.id);
    expect(row.state).toBe('broken');
    expect(row.lastError).toMatch(/kdeadbeef00/);
    expect(await lastOutcome(grant.id)).toBe('broken');
    expect(endpoint.requests).toHaveLength(0);
    expect(rig.logs.some((l) => l.level === 50 && l.state === 'broken')).toBe(true);
  });

  it('stops a grant whose client vanished as broken', async () => {
    rig = await startRefresherRig(endpoint);
    const grant = await rig.seed();
    rig.raw.pragma('foreign_keys = OFF');
    rig.raw.prepare('delete from clients').run();
    const result = await rig.refresher.refresh(grant.id, 0, 'schedule');
    expect(result.status).toBe('broken');
    expect((await rowOf(grant.id)).lastError).toMatch(/no longer exists/);
  });

  it('turns a bare 4xx repeated over the span into needs_reconsent with the evidence', async () => {
    rig = await startRefresherRig(endpoint, { unexplained: { count: 3, spanMs: 0 } });
    const grant = await rig.seed();
    endpoint.push(...Array.from({ length: 3 }, () => ({ type: 'status', status: 400, body: '' }) as const));
    expect((await rig.refresher.refresh(grant.id, 0, 'schedule')).status).toBe('retrying');
    expect((await rig.refresher.refresh(grant.id, 0, 'schedule')).status).toBe('retrying');
    const third = await rig.refresher.refresh(grant.id, 0, 'schedule');
    expect(third.status).toBe('stopped');
    const row = await rowOf(grant.id);
    expect(row.state).toBe('needs_reconsent');
    expect(row.lastError).toMatch(/3 times since .* HTTP 400 and no OAuth error/);
  });

  it('logs the OAuth error code under a field no redaction hides', async () => {
    rig = await startRefresherRig(endpoint);
    const grant = await rig.seed();
    endpoint.push({ type: 'status', status: 400, json: { error: 'invalid_grant' } });
    expect((await rig.refresher.refresh(grant.id, 0, 'schedule')).status).toBe('stopped');
    const line = rig.logs.find((l) => String(l.msg).startsWith('grant refused by the provider'));
    expect(line?.errorCode).toBe('invalid_grant');
    expect(JSON.stringify(rig.logs)).not.toContain('[redacted]');
  });

  it('warns with both versions when a spent token meets a grant that has moved on', async () => {
    rig = await startRefresherRig(endpoint);
    const grant = await rig.seed();
    endpoint.push({ type: 'status', status: 400, json: { error: 'invalid_grant' }, latencyMs: 300 });
    const pending = rig.refresher.refresh(grant.id, 0, 'schedule');
    await waitFor(() => endpoint.requests.length === 1, 'the request sent');
    rig.raw.prepare('update grants set version = version + 1 where id = ?').run(grant.id);
    expect((await pending).status).toBe('overtaken');
    const line = rig.logs.find((l) => String(l.msg).includes('moved on'));
    expect(line).toMatchObject({ level: 40, version: 0, currentVersion: 1 });
  });
});
