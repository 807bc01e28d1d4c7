import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../src/grants/grant.js';
import { packageRoot } from '../../src/util/package-root.js';
import {
  addClient,
  type Engine,
  removeDir,
  seedGrant,
  startEngine,
  tempDataDir,
  testKey,
  testProfile,
  waitFor,
} from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { parsePrometheus, type Sample } from '../support/prometheus.js';

const RULES = join(packageRoot(), 'deploy', 'prometheus', 'alerts.yml');
const DASHBOARD = join(packageRoot(), 'deploy', 'grafana', 'grantkeeper.json');
const promtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
const ALERTS = [...readFileSync(RULES, 'utf8').matchAll(/^\s+- alert: (\S+)$/gm)].map((m) => m[1] as string);

/** A scrape as promtool test input: every finite sample held constant for an hour, one minute apart. */
function inputSeries(samples: Sample[]): Array<{ series: string; values: string }> {
  const series = samples
    .filter((s) => s.name.startsWith('grantkeeper_') && Number.isFinite(s.value))
    .map((s) => {
      const labels = { ...s.labels, job: 'grantkeeper', instance: 'replica-a:7420' };
      const text = Object.entries(labels)
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join(',');
      return { series: `${s.name}{${text}}`, values: `${s.value}x60` };
    });
  return [...series, { series: 'up{job="grantkeeper",instance="replica-a:7420"}', values: '1x60' }];
}

/**
 * The rules as shipped but without their annotations: promtool compares annotations too, and
 * those are prose for people (templated with values); what fires, and with which labels, is tested.
 */
function rulesWithoutAnnotations(dir: string): string {
  const kept: string[] = [];
  let skipDeeperThan: number | undefined;
  for (const line of readFileSync(RULES, 'utf8').split('\n')) {
    const indent = line.length - line.trimStart().length;
    if (skipDeeperThan !== undefined && (line.trim() === '' || indent > skipDeeperThan)) continue;
    skipDeeperThan = undefined;
    if (line.trim() === 'annotations:') {
      skipDeeperThan = indent;
      continue;
    }
    kept.push(line);
  }
  const path = join(dir, 'alerts-without-annotations.yml');
  writeFileSync(path, kept.join('\n'));
  return path;
}

/** Runs `promtool test rules` with these expectations at 30 min; returns its output on failure. */
function promtoolTest(
  dir: string,
  name: string,
  samples: Sample[],
  expected: Record<string, Array<Record<string, string>>>,
): { ok: boolean; output: string } {
  // An expectation for a rule the file does not have would otherwise pass unchecked.
  const unknown = Object.keys(expected).filter((alertname) => !ALERTS.includes(alertname));
  if (unknown.length > 0) return { ok: false, output: `no such rule: ${unknown.join(', ')}` };
  const file = join(dir, `${name}.test.yml`);
  const test = {
    rule_files: [rulesWithoutAnnotations(dir)],
    evaluation_interval: '1m',
    tests: [
      {
        interval: '1m',
        input_series: inputSeries(samples),
        alert_rule_test: ALERTS.map((alertname) => ({
          eval_time: '30m',
          alertname,
          exp_alerts: (expected[alertname] ?? []).map((labels) => ({ exp_labels: labels })),
        })),
      },
    ],
  };
  // JSON is YAML: no YAML library needed to write it.
  writeFileSync(file, JSON.stringify(test, null, 1));
  const run = spawnSync('promtool', ['test', 'rules', file], { encoding: 'utf8' });
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}` };
}

/**
 * The shipped alert rules, evaluated by Prometheus's own promtool against /metrics scrapes recorded
 * from a real service: quiet for a healthy fleet; firing for a stopped grant and a paused queue.
 */
describe.skipIf(!promtool)('the Prometheus alert rules against recorded scrapes', () => {
  let redis: PrivateRedis;
  let endpoint: FaultEndpoint;
  let engine: Engine;
  let dataDir: string;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gk-rules-'));
    redis = await startPrivateRedis();
    endpoint = await startFaultEndpoint();
    dataDir = tempDataDir();
    engine = await startEngine({ redisUrl: redis.url, dataDir, key: testKey(), api: {} });
  }, 60_000);

  afterAll(async () => {
    await engine?.stop();
    await Promise.all([redis?.stop(), endpoint?.close()]);
    if (dataDir) removeDir(dataDir);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async () => parsePrometheus(await (await fetch(`${engine.keeper?.url}/metrics`)).text());

  it('the file passes promtool check rules', () => {
    const out = execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(out).toMatch(new RegExp(`SUCCESS: ${ALERTS.length} rules found`));
  });

  it('stay quiet for a healthy fleet, and fire for a stopped grant and a paused queue', async () => {
    const profile = testProfile(endpoint.url);
    const client = await addClient(engine, profile, { clientId: 'rules', clientSecret: 'rules-secret' });
    const grants: Grant[] = [];
    for (let i = 0; i < 3; i++) {
      grants.push(await seedGrant(engine, client.id, profile, { ...endpoint.mintGrant(), expiresIn: 3600 }));
    }
    const { reader } = engine.service.engine;
    // Two refreshed; the first is left for the fault (a forced read right after a refresh answers
    // from that refresh, invariant 10).
    for (const g of grants.slice(1)) await reader.read(g.id, { force: true });
    const healthy = await scrape();
    const quiet = promtoolTest(dir, 'healthy', healthy, {});
    expect(quiet.output).toMatch(/SUCCESS/);
    expect(quiet.ok).toBe(true);

    // The fault scenario: the provider refuses one grant for good, and the refresh queue is paused.
    endpoint.push({ type: 'status', status: 400, json: { error: 'invalid_grant' } });
    await reader.read(grants[0]?.id ?? '', { force: true }).catch(() => {});
    await waitFor(
      async () =>
        (await engine.service.app.grants.get(grants[0]?.id ?? ''))?.grant.state === 'needs_reconsent',
      'the refused grant stopped',
      10_000,
    );
    await engine.service.engine.queue.pause();
    // And the provider rate-limits the client: one 429 report degrades it for every replica.
    await engine.service.engine.pacer.report(
      client.id,
      grants[1]?.id ?? '',
      { kind: 'throttled', pauseMs: 600_000 },
      false,
    );
    // And another client's secret was rotated at the provider: it is failing.
    const refused = await addClient(engine, profile, { clientId: 'rotated', name: 'rotated-client' });
    await engine.service.engine.pacer.report(
      refused.id,
      grants[1]?.id ?? '',
      { kind: 'refused', code: 'invalid_client' },
      false,
      refused.updatedAt,
    );
    const fault = await scrape();
    const firing = promtoolTest(dir, 'fault', fault, {
      GrantkeeperClientFailing: [{ severity: 'critical', client: 'rotated-client' }],
      GrantkeeperGrantsStopped: [{ severity: 'critical', state: 'needs_reconsent' }],
      GrantkeeperQueuePaused: [{ severity: 'critical', queue: 'refresh' }],
      GrantkeeperClientDegraded: [{ severity: 'warning', client: 'test-client' }],
    });
    expect(firing.output).toMatch(/SUCCESS/);
    expect(firing.ok).toBe(true);
    // And the same expectations against the healthy scrape fail: the test can tell them apart.
    expect(
      promtoolTest(dir, 'control', healthy, {
        GrantkeeperGrantsStopped: [{ severity: 'critical', state: 'needs_reconsent' }],
      }).ok,
    ).toBe(false);
    await engine.service.engine.queue.resume();
  }, 60_000);

  it('the Grafana dashboard queries only metrics the service exports', async () => {
    // Every metric the registry defines, with or without samples yet (a counter before its first event).
    const text = await (await fetch(`${engine.keeper?.url}/metrics`)).text();
    const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    };
    const queried = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(queried.length).toBeGreaterThan(5);
    const names = new Set(queried.flatMap((e) => [...e.matchAll(/\bgrantkeeper_[a-z_]+/g)].map((m) => m[0])));
    const unknown = [...names].filter((n) => !exported.has(n.replace(/_(bucket|sum|count)$/, '')));
    expect(unknown).toEqual([]);
  });
});

if (!promtool)
  describe.skip('alert rules: skipped, promtool not found (apt-get install prometheus)', () => {});
