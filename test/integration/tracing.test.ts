import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPAN_NAMES } from '../../src/telemetry/span-policy.js';
import {
  CleanupStack,
  createApiKey,
  type RunProcess,
  seedGrants,
  snapshotGrants,
  startRun,
  writeRunConfig,
} from '../faults/support.js';
import { removeDir, tempDataDir, testKey } from '../support/engine.js';
import { type FaultEndpoint, startFaultEndpoint } from '../support/fault-endpoint.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver.js';
import { type PrivateRedis, startPrivateRedis } from '../support/private-redis.js';
import { leakedSecrets } from '../support/secret-scan.js';

const SECRET = 'tracing-client-secret-5f1c';
const SPAN_STATUS_ERROR = 2;

/**
 * `grantkeeper run` in a child process exporting to a collector of ours on loopback: a scheduled
 * refresh, a read from the store, a read that refreshes and a read whose refresh the provider
 * refuses (with our secrets and the grant's label in its error text). The spans form the tree the
 * README promises, and nothing that left the process holds a token, a secret, a label or an id.
 */
describe('traces', () => {
  const cleanup = new CleanupStack();
  let endpoint: FaultEndpoint;
  let redis: PrivateRedis;
  let dataDir: string;
  let apiKey: string;
  const key = testKey();

  beforeAll(async () => {
    endpoint = await startFaultEndpoint();
    cleanup.add(() => endpoint.close());
    redis = await startPrivateRedis();
    cleanup.add(() => redis.stop());
    dataDir = tempDataDir();
    cleanup.add(() => removeDir(dataDir));
    apiKey = await createApiKey(dataDir, key);
  });

  afterAll(() => cleanup.run());

  const client = () => ({
    endpoints: { authorization: endpoint.url.replace(/token$/, 'auth'), token: endpoint.url },
    clientId: 'gk-tracing',
    clientSecret: SECRET,
  });

  /** Runs the service against a fresh collector; `scenario` drives it, then SIGTERM flushes the spans. */
  async function traced(
    env: Record<string, string>,
    scenario: (run: RunProcess, api: string) => Promise<void>,
  ): Promise<OtlpReceiver> {
    const receiver = await startOtlpReceiver();
    cleanup.add(() => receiver.close());
    const run = startRun({
      cleanup,
      configPath: writeRunConfig(dataDir, client()),
      dataDir,
      key,
      redisUrl: redis.url,
      clientSecret: SECRET,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, ...env },
    });
    await scenario(run, await run.apiUrl());
    const { code } = await run.terminate();
    expect(run.cli.stderr()).toBe('');
    expect(code).toBe(0);
    return receiver;
  }

  const read = async (api: string, id: string) => {
    const res = await fetch(`${api}/v1/grants/${id}/token?min_valid=1`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    return res.status;
  };

  it('exports the refresh and read span trees with no token, secret, label or grant id in them', async () => {
    // 0: due now (the worker refreshes it); 1 and 2: never scheduled, their access tokens expire at
    // once, so a read must refresh them on demand.
    const { ids } = await seedGrants({
      dataDir,
      key,
      client: client(),
      count: 3,
      mint: async (i) => ({ ...endpoint.mintGrant(), ...(i === 0 ? {} : { expiresIn: 1 }) }),
      dueAt: (i) => (i === 0 ? Date.now() : Date.now() + 48 * 3600_000),
    });
    const [scheduled = '', refreshedOnRead = '', refused = ''] = ids;
    const before = await snapshotGrants(dataDir, key);
    const labels = before.map((g) => g.row.label);
    const refusedRow = before.find((g) => g.row.id === refused);

    const receiver = await traced({}, async (run, api) => {
      await run.waitForLog('grant refreshed');
      expect(await read(api, scheduled)).toBe(200);
      // The provider refuses grant 2, naming its label and echoing the refresh token and our secret.
      endpoint.push({
        type: 'status',
        status: 400,
        json: {
          error: 'invalid_grant',
          error_description: `grant ${refusedRow?.row.label} used ${refusedRow?.refreshToken} with ${SECRET}`,
        },
      });
      expect(await read(api, refused)).toBe(409);
      expect(await read(api, refreshedOnRead)).toBe(200);
    });

    const spans = receiver.spans();
    const children = (parent: ReceivedSpan) => spans.filter((s) => s.parentSpanId === parent.spanId);
    const names = (parent: ReceivedSpan) => children(parent).map((s) => s.name);
    const refreshSteps = [SPAN_NAMES.claim, SPAN_NAMES.tokenRequest, SPAN_NAMES.commit, SPAN_NAMES.schedule];

    // The scheduled job: a root refresh span with its four steps.
    const job = spans.find((s) => s.name === SPAN_NAMES.refresh && s.parentSpanId === '');
    expect(job?.attributes).toMatchObject({
      'grantkeeper.trigger': 'schedule',
      'grantkeeper.outcome': 'refreshed',
      'grantkeeper.provider': 'oidc',
      'grantkeeper.client': 'faulty',
      'grantkeeper.grant.version': 0,
      'grantkeeper.refresh.attempt': 1,
    });
    expect(names(job!)).toEqual(refreshSteps);
    const post = children(job!).find((s) => s.name === SPAN_NAMES.tokenRequest);
    expect(post?.attributes).toMatchObject({
      'http.request.method': 'POST',
      'server.address': '127.0.0.1',
      'server.port': Number(new URL(endpoint.url).port),
      'http.response.status_code': 200,
    });

    // Three reads: from the store (no children), refreshed on demand, refused.
    const reads = spans.filter((s) => s.name === SPAN_NAMES.tokenRead);
    expect(reads).toHaveLength(3);
    expect(reads.every((s) => s.parentSpanId === '')).toBe(true);
    const fromStore = reads.find((s) => s.attributes['grantkeeper.token_read.source'] === 'store');
    expect(fromStore && names(fromStore)).toEqual([]);
    const onDemand = reads.find((s) => s.attributes['grantkeeper.token_read.source'] === 'refresh');
    const onDemandRefresh = onDemand && children(onDemand).find((s) => s.name === SPAN_NAMES.refresh);
    expect(onDemandRefresh?.attributes).toMatchObject({
      'grantkeeper.trigger': 'on_demand',
      'grantkeeper.outcome': 'refreshed',
    });
    expect(names(onDemandRefresh!)).toEqual(refreshSteps);

    const failed = reads.find((s) => s.status.code === SPAN_STATUS_ERROR);
    expect(failed?.status.message).toBe('needs_reconsent');
    const refusedRefresh = failed && children(failed).find((s) => s.name === SPAN_NAMES.refresh);
    expect(refusedRefresh?.attributes).toMatchObject({
      'grantkeeper.outcome': 'stopped',
      'error.type': 'invalid_grant',
      'http.response.status_code': 400,
    });
    // A stopped grant has no next job: no schedule step.
    expect(names(refusedRefresh!)).toEqual([SPAN_NAMES.claim, SPAN_NAMES.tokenRequest, SPAN_NAMES.commit]);
    expect(receiver.resourceAttributes()[0]).toMatchObject({ 'service.name': 'grantkeeper' });

    // Everything that left the process, resource and scope included, byte for byte.
    const exported = receiver.rawBodies.join('\n');
    const secrets = [...endpoint.issuedTokens(), SECRET, apiKey, ...labels, ...ids];
    expect(secrets.length).toBeGreaterThan(10);
    expect(leakedSecrets(exported, secrets)).toEqual([]);
  });

  it('adds the grant id and label only when GRANTKEEPER_TRACE_GRANT_IDS=true', async () => {
    const { ids } = await seedGrants({
      dataDir,
      key,
      client: client(),
      count: 1,
      mint: async () => endpoint.mintGrant(),
    });
    const [id = ''] = ids;
    const label = (await snapshotGrants(dataDir, key)).find((g) => g.row.id === id)?.row.label;

    const receiver = await traced({ GRANTKEEPER_TRACE_GRANT_IDS: 'true' }, async (run, api) => {
      // Test 1's grants are settled or planned an hour ahead: this one is the only refresh.
      await run.waitForLog('grant refreshed');
      expect(await read(api, id)).toBe(200);
    });

    const spans = receiver.spans();
    const identity = { 'grantkeeper.grant.id': id, 'grantkeeper.grant.label': label };
    const job = spans.find(
      (s) => s.name === SPAN_NAMES.refresh && s.attributes['grantkeeper.grant.id'] === id,
    );
    expect(job?.attributes).toMatchObject(identity);
    const tokenRead = spans.find((s) => s.name === SPAN_NAMES.tokenRead);
    expect(tokenRead?.attributes).toMatchObject(identity);
    // Still never a token or a secret.
    expect(
      leakedSecrets(receiver.rawBodies.join('\n'), [...endpoint.issuedTokens(), SECRET, apiKey]),
    ).toEqual([]);
  });
});
