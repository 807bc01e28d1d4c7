import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueApiKey } from '../../src/api/auth/api-keys.js';
import { ASSETS } from '../../src/api/routes/page-assets.js';
import type { ClientView, FleetView, GrantView } from '../../src/api/schemas.js';
import type { Client } from '../../src/grants/ports.js';
import {
  addClient,
  type Engine,
  removeDir,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
} from '../support/engine.js';
import { type SeededFleet, seedFleet } from '../support/fleet.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';

const HOUR = 3_600_000;
type ListAnswer = { grants: GrantView[]; next: string | null; now: string };

/** GET /v1/grants a page at a time and GET /v1/fleet, against a seeded fleet of two clients. */
describe('the paged grant listing and the fleet summary', () => {
  let redis: PrivateRedis;
  let engine: Engine;
  let dataDir: string;
  let base: string;
  let clients: Client[];
  let fleet: SeededFleet;
  let adminKey: string;
  let readerKey: string;
  let readerIds: string[];

  const get = (key: string, path: string) =>
    fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  const list = async (key: string, query = ''): Promise<ListAnswer> => {
    const res = await get(key, `/v1/grants${query}`);
    expect(res.status).toBe(200);
    return (await res.json()) as ListAnswer;
  };
  /** Every grant the key sees, following `next` from page to page. */
  const everyPage = async (key: string, query: string) => {
    const seen: GrantView[] = [];
    let next: string | null = null;
    do {
      const after: string = next ? `&after=${encodeURIComponent(next)}` : '';
      const page = await list(key, `?${query}${after}`);
      seen.push(...page.grants);
      next = page.next;
    } while (next);
    return seen;
  };

  beforeAll(async () => {
    redis = await startPrivateRedis();
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey(), api: {} });
    base = engine.keeper!.url;
    // Nobody listens on the token endpoint: no seeded grant is due while the test runs.
    clients = [
      await addClient(engine, testProfile('http://127.0.0.1:9/token'), { clientId: 'a', name: 'newsroom' }),
      await addClient(engine, testProfile('http://127.0.0.1:9/token', { keepAliveIntervalSec: 2 * 86_400 }), {
        clientId: 'b',
        name: 'support',
      }),
    ];
    fleet = seedFleet(engine.service.app, clients, 60);
    readerIds = fleet.ids.slice(0, 5);
    const keys = engine.service.app.apiKeys;
    adminKey = (await issueApiKey(keys, { name: 'ops', role: 'admin', now: Date.now() })).key;
    readerKey = (
      await issueApiKey(keys, { name: 'bot', role: 'reader', grantIds: readerIds, now: Date.now() })
    ).key;
  });

  afterAll(async () => {
    await engine?.stop();
    await redis?.stop();
    if (dataDir) removeDir(dataDir);
  });

  it('answers every grant on one page by default, ordered by label, as callers always had it', async () => {
    const answer = await list(adminKey);
    expect(answer.grants).toHaveLength(60);
    expect(answer.next).toBeNull();
    const labels = answer.grants.map((g) => g.label);
    expect(labels).toEqual([...labels].sort());
    expect(answer.grants[0]).not.toHaveProperty('recent_events');
  });

  it('pages with a cursor: none skipped or repeated, the same grants as one page', async () => {
    const whole = (await list(adminKey)).grants.map((g) => g.id);
    const first = await list(adminKey, '?limit=7');
    expect(first.grants).toHaveLength(7);
    expect(first.next).toEqual(expect.any(String));
    expect((await everyPage(adminKey, 'limit=7')).map((g) => g.id)).toEqual(whole);
  });

  it('filters by label text, client name and state, in any combination', async () => {
    const all = (await list(adminKey)).grants;
    const support = await everyPage(adminKey, 'client=support&limit=9');
    expect(support.map((g) => g.id)).toEqual(all.filter((g) => g.client === 'support').map((g) => g.id));
    const failing = (await list(adminKey, '?state=failing')).grants;
    expect(failing.map((g) => g.id)).toEqual(all.filter((g) => g.state === 'failing').map((g) => g.id));
    const text = all[3]!.label.slice(2, 7).toUpperCase();
    const matching = all.filter((g) => g.label.toLowerCase().includes(text.toLowerCase()));
    const found = (await list(adminKey, `?q=${encodeURIComponent(text)}&client=newsroom`)).grants;
    expect(found.map((g) => g.id)).toEqual(matching.filter((g) => g.client === 'newsroom').map((g) => g.id));
    expect((await list(adminKey, '?client=nobody')).grants).toEqual([]);
    expect((await list(adminKey, '?q=%25')).grants).toEqual([]);
  });

  it('adds each grant’s newest events from one batch, the same as the grant’s own view', async () => {
    const page = (await list(adminKey, '?limit=4&events=2')).grants;
    for (const g of page) {
      const own = (await (await get(adminKey, `/v1/grants/${g.id}`)).json()) as GrantView;
      expect(g.recent_events).toEqual(own.recent_events!.slice(0, 2));
      expect(g.recent_events).toHaveLength(2);
    }
  });

  it('refuses a cursor it did not give out and a page size out of range', async () => {
    for (const query of ['?after=bm9wZQ', '?limit=0', '?limit=1001', '?state=sleeping', '?sort=label']) {
      const res = await get(adminKey, `/v1/grants${query}`);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: string }).error).toBe('bad_request');
    }
  });

  it('shows a reader only its grants: in pages, filters and every count', async () => {
    expect((await everyPage(readerKey, 'limit=2')).map((g) => g.id).sort()).toEqual([...readerIds].sort());
    const fleetOf = (await (await get(readerKey, '/v1/fleet')).json()) as FleetView;
    expect(fleetOf.total).toBe(5);
    expect(fleetOf.by_client.reduce((n, c) => n + c.total, 0)).toBe(5);
    const events = fleetOf.outcomes.flatMap((o) => o.by_outcome).reduce((n, o) => n + o.count, 0);
    expect(events).toBe(fleet.events.filter((e) => readerIds.includes(e.grantId)).length);
  });

  it('summarises the fleet as its grants and events add up, hour by hour', async () => {
    const res = await get(adminKey, '/v1/fleet');
    expect(res.status).toBe(200);
    const summary = (await res.json()) as FleetView;
    const grants = (await list(adminKey)).grants;
    const aheadFrom = Date.parse(summary.ahead_from);
    const behindFrom = Date.parse(summary.behind_from);
    expect(aheadFrom).toBe(Date.parse(summary.now) - (Date.parse(summary.now) % HOUR));
    expect(behindFrom).toBe(aheadFrom - 23 * HOUR);

    const count = <T>(items: T[], key: (t: T) => string) =>
      items.reduce((m, t) => m.set(key(t), (m.get(key(t)) ?? 0) + 1), new Map<string, number>());
    expect(summary.total).toBe(60);
    expect(new Map(summary.by_state.map((s) => [s.state, s.count]))).toEqual(count(grants, (g) => g.state));
    expect(new Map(summary.by_client.map((c) => [c.client, c.total]))).toEqual(
      count(grants, (g) => g.client!),
    );

    const live = grants.filter((g) => g.state === 'active' || g.state === 'failing');
    const hourOf = (iso: string, from: number) => Math.floor((Date.parse(iso) - from) / HOUR);
    const perHour = (times: number[]) =>
      Array.from({ length: 24 }, (_, h) => times.filter((t) => t === h).length);
    expect(summary.planned.per_hour).toEqual(perHour(live.map((g) => hourOf(g.next_refresh_at, aheadFrom))));
    const deadlineHours = live.map((g) => hourOf(g.keepalive_deadline!, aheadFrom));
    expect(summary.deadlines.per_hour).toEqual(perHour(deadlineHours));
    expect(summary.deadlines.within_24h).toBe(deadlineHours.filter((h) => h < 24).length);
    expect(summary.deadlines.within_7d).toBe(deadlineHours.filter((h) => h < 7 * 24).length);
    // The two-day client's idle keepalive grants put some deadlines inside the week.
    expect(summary.deadlines.within_7d).toBeGreaterThan(0);

    const eventsOf = (client: string) => {
      const ids = new Set(grants.filter((g) => g.client === client).map((g) => g.id));
      return fleet.events.filter((e) => ids.has(e.grantId) && e.at >= behindFrom);
    };
    for (const line of summary.outcomes) {
      const events = eventsOf(line.client);
      const refreshed = events.filter((e) => e.outcome === 'refreshed');
      expect(line.refreshed).toEqual(perHour(refreshed.map((e) => Math.floor((e.at - behindFrom) / HOUR))));
      expect(line.failed.reduce((a, b) => a + b, 0)).toBe(events.length - refreshed.length);
      for (let h = 0; h < 24; h++) {
        const timed = events.filter(
          (e) => Math.floor((e.at - behindFrom) / HOUR) === h && e.durationMs !== null,
        );
        const durations = timed.map((e) => e.durationMs!);
        expect(line.max_ms[h]).toBe(durations.length ? Math.max(...durations) : null);
        expect(line.avg_ms[h]).toBe(
          durations.length ? Math.round(durations.reduce((a, b) => a + b, 0) / durations.length) : null,
        );
      }
    }
    expect(summary.outcomes.map((o) => o.client)).toEqual(['newsroom', 'support']);
  });

  it('marks a degraded client: the page shows which clients are waiting on a probe', async () => {
    const fleetNow = async () => ((await (await get(adminKey, '/v1/fleet')).json()) as FleetView).by_client;
    expect((await fleetNow()).map((c) => c.degraded)).toEqual([null, null]);
    const [newsroom] = clients as [Client];
    await engine.service.engine.pacer.report(
      newsroom.id,
      'g_any',
      { kind: 'throttled', pauseMs: 60_000 },
      false,
    );
    expect(new Map((await fleetNow()).map((c) => [c.client, c.degraded]))).toEqual(
      new Map([
        ['newsroom', 'throttled'],
        ['support', null],
      ]),
    );
    const listed = (await (await get(adminKey, '/v1/clients')).json()) as { clients: ClientView[] };
    expect(listed.clients.find((c) => c.name === 'newsroom')?.condition).toMatchObject({
      state: 'degraded',
      reason: 'throttled',
      paused_until: expect.any(String),
    });
    expect((await get(readerKey, '/v1/clients')).status).toBe(403);
  });

  it('marks a failing client: its credentials were refused, with the error, on the page and in the API', async () => {
    const [, support] = clients as [Client, Client];
    await engine.service.engine.pacer.report(
      support.id,
      'g_any',
      { kind: 'refused', code: 'invalid_client' },
      false,
      support.updatedAt,
    );
    const fleet = ((await (await get(adminKey, '/v1/fleet')).json()) as FleetView).by_client;
    expect(fleet.find((c) => c.client === 'support')?.degraded).toBe('client_error');
    const listed = (await (await get(adminKey, '/v1/clients')).json()) as { clients: ClientView[] };
    expect(listed.clients.find((c) => c.name === 'support')?.condition).toMatchObject({
      state: 'failing',
      reason: 'client_error',
      error_code: 'invalid_client',
      degraded_since: expect.any(String),
    });
  });

  it('serves uPlot from node_modules with a long cache and no session', async () => {
    expect(ASSETS.uplotScript).toBe('assets/uplot-1.6.32.min.js');
    const script = await fetch(`${base}/${ASSETS.uplotScript}`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(script.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(await script.text()).toContain('uPlot');
    expect((await fetch(`${base}/${ASSETS.uplotStyle}`)).headers.get('content-type')).toMatch(/^text\/css/);
    expect((await fetch(`${base}/assets/other.js`)).status).toBe(404);
  });

  it("shows a grant's hard end as renewable until, and the earlier deadline as needs consent by, with reasons", async () => {
    const now = Date.now();
    const ends = now + 3 * 86_400_000;
    const grant = await engine.service.app.grants.saveConsent({
      clientRef: clients[0]!.id,
      label: 'zz-hard-end',
      accessToken: 'at-hard-end',
      refreshToken: 'rt-hard-end',
      accessExpiresAt: now + 10 * HOUR,
      accessLifetimeMs: 10 * HOUR,
      refreshTokenUsedAt: now,
      nextRefreshAt: now + 9 * HOUR,
      refreshExpires: { at: ends, reason: 'refresh_token_expires_in' },
      now,
    });
    const res = await get(adminKey, `/v1/grants/${grant.id}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      renewable_until: new Date(ends).toISOString(),
      renewable_until_reason: 'refresh_token_expires_in',
      needs_consent_by: new Date(ends).toISOString(),
      needs_consent_by_reason: 'refresh_token_expires_in',
    });
    // Without a hard end, the idle deadline (30 days after last use, for this client) is the one.
    const idle = (await list(adminKey, '?client=newsroom')).grants.find((g) => g.renewable_until === null);
    expect(idle?.needs_consent_by_reason).toMatch(/idle limit.*30 days/);
  });
});
