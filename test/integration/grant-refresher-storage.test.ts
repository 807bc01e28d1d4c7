import type Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GrantRepository } from '../../src/grants/ports.js';
import type { GrantRefresher } from '../../src/refresh/grant-refresher.js';
import { sleep, waitFor } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type RefresherRig, startRefresherRig } from '../support/refresher.js';

const LEASE_MS = 10_000;

/**
 * The refresher against a real SQLite file whose write lock another connection takes at chosen
 * moments (a short busy timeout keeps the test quick), and a clock the test moves.
 */
describe('grant refresher when the database refuses writes', () => {
  let endpoint: FaultEndpoint;
  let rig: RefresherRig;
  let grants: GrantRepository;
  let locker: Database.Database;
  let refresher: GrantRefresher;
  let clock: { offset: number };

  beforeEach(async () => {
    endpoint = await startFaultEndpoint();
    rig = await startRefresherRig(endpoint, { leaseMs: LEASE_MS });
    ({ grants, refresher, clock, raw: locker } = rig);
  });

  afterEach(async () => {
    await rig.close();
    await endpoint.close();
  });

  const seed = () => rig.seed();

  it('defers without sending anything when the claim meets a locked database', async () => {
    const grant = await seed();
    locker.exec('BEGIN IMMEDIATE');
    const result = await refresher.refresh(grant.id, 0, 'schedule');
    expect(result).toMatchObject({ status: 'deferred', cause: 'locked' });
    expect(endpoint.requests).toHaveLength(0);
    locker.exec('ROLLBACK');
    expect((await grants.get(grant.id))?.grant.leaseOwner).toBeNull();
  });

  it('holds an answer the database refuses and stores it once the lock is gone', async () => {
    const grant = await seed();
    endpoint.setDefault({ type: 'rotate', latencyMs: 300 });
    const pending = refresher.refresh(grant.id, 0, 'schedule');
    await waitFor(() => endpoint.requests.length === 1, 'the request sent');
    locker.exec('BEGIN IMMEDIATE');
    await waitFor(() => refresher.heldGrantIds().includes(grant.id), 'the answer held');
    await sleep(600);
    expect((await grants.get(grant.id))?.grant.version).toBe(0);
    locker.exec('COMMIT');
    const result = await pending;
    expect(result.status).toBe('refreshed');
    const stored = (await grants.get(grant.id))!;
    expect(stored.grant.version).toBe(1);
    expect(endpoint.isAccessTokenValid(stored.tokens.accessToken())).toBe(true);
    expect(refresher.heldGrantIds()).toEqual([]);
    expect(endpoint.requests).toHaveLength(1);
  });

  it('never claims a grant it is still refreshing, even after its own lease has run out', async () => {
    const grant = await seed();
    endpoint.setDefault({ type: 'rotate', latencyMs: 300 });
    const first = refresher.refresh(grant.id, 0, 'schedule');
    await waitFor(() => endpoint.requests.length === 1, 'the request sent');
    // As after an event-loop stall longer than the lease: this process's clock says it is over.
    clock.offset = LEASE_MS + 1000;
    const second = await refresher.refresh(grant.id, 0, 'schedule');
    expect(second.status).toBe('busy');
    expect((await first).status).toBe('refreshed');
    expect(endpoint.requests).toHaveLength(1);
    expect(endpoint.reuseDetections).toBe(0);
  });
});
