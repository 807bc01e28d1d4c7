import { trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { GrantkeeperError } from '../../src/errors/grantkeeper-error.js';
import { createLogger } from '../../src/log/logger.js';
import { SPAN_NAMES, type SpanFacts } from '../../src/telemetry/span-policy.js';
import { Tracing } from '../../src/telemetry/spans.js';
import { startTracing } from '../../src/telemetry/tracing.js';
import { tracingSettings } from '../../src/telemetry/tracing-env.js';

const silent = createLogger({ level: 'silent' });
const grant = { id: 'grant-id-1', label: '@someone' };

function recordingTracing(grantIdentity: boolean) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  return { exporter, tracing: new Tracing(provider.getTracer('test'), { grantIdentity }) };
}

describe('tracing switch', () => {
  it('stays off without an OTLP endpoint, and the engine then gets only non-recording spans', async () => {
    expect(tracingSettings({})).toEqual({ enabled: false });
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toEqual({ enabled: false });
    const handle = startTracing({}, silent, '0.0.0');
    expect(handle.tracer).toBeUndefined();
    await handle.shutdown();
    // What the engine uses without an exporting tracer: the API's global one, a no-op here.
    const span = new Tracing(trace.getTracer('grantkeeper'), { grantIdentity: true }).start(
      SPAN_NAMES.refresh,
    );
    expect(span.recording).toBe(false);
    expect(span.child(SPAN_NAMES.claim)).toBe(span);
  });

  it('turns on with the standard variables and honours disable, service name and sampler', () => {
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' })).toEqual({
      enabled: true,
      tracesUrl: 'http://collector:4318/v1/traces',
      serviceName: 'grantkeeper',
      sampler: 'parentbased_always_on',
      ratio: 1,
    });
    expect(
      tracingSettings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector/otlp/traces',
        OTEL_SERVICE_NAME: 'keeper-eu',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }),
    ).toMatchObject({
      tracesUrl: 'https://collector/otlp/traces',
      serviceName: 'keeper-eu',
      sampler: 'parentbased_traceidratio',
      ratio: 0.25,
    });
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };
    expect(tracingSettings({ ...on, OTEL_SDK_DISABLED: 'TRUE' })).toEqual({ enabled: false });
    expect(tracingSettings({ ...on, OTEL_TRACES_EXPORTER: 'none' })).toEqual({ enabled: false });
  });

  it('refuses a bad value in one line that never repeats the URL', () => {
    const bad = () =>
      tracingSettings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://user:hunter2@collector',
        OTEL_TRACES_SAMPLER: 'x',
      });
    expect(bad).toThrow(GrantkeeperError);
    expect(bad).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT: expected an http\(s\) URL; OTEL_TRACES_SAMPLER: expected one of/,
    );
    expect(bad).not.toThrow(/hunter2/);
  });
});

describe('span policy', () => {
  it('exports only allow-listed attributes, and the grant id and label only when asked', () => {
    for (const grantIdentity of [false, true]) {
      const { exporter, tracing } = recordingTracing(grantIdentity);
      const span = tracing.start(SPAN_NAMES.tokenRead, { source: 'store' });
      span.identify(grant).set({ accessToken: 'at-secret' } as SpanFacts);
      span.fail('unusable');
      span.end();
      const [exported] = exporter.getFinishedSpans();
      const identity = grantIdentity
        ? { 'grantkeeper.grant.id': grant.id, 'grantkeeper.grant.label': grant.label }
        : {};
      expect(exported?.attributes).toEqual({
        'grantkeeper.token_read.source': 'store',
        'error.type': 'unusable',
        ...identity,
      });
      expect(exported?.status).toEqual({ code: 2, message: 'unusable' });
    }
  });
});
