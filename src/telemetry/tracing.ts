import type { Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { Logger } from '../log/logger.js';
import { TIMED_OUT, withTimeout } from '../util/with-timeout.js';
import { type TraceSampler, tracingSettings } from './tracing-env.js';

/** How long a stop waits for the last spans to reach the collector before it gives up on them. */
export const TRACE_FLUSH_WAIT_MS = 3000;

export interface TracingHandle {
  /** The exporting tracer; undefined when tracing is off (the API's no-op tracer then serves). */
  tracer?: Tracer;
  /** Exports what is buffered and stops, waiting at most TRACE_FLUSH_WAIT_MS. */
  shutdown(): Promise<void>;
}

const OFF: TracingHandle = { shutdown: async () => {} };

/**
 * Starts a tracer provider exporting OTLP/HTTP when the standard variables ask for it. Its tracer
 * is handed to the engine rather than registered globally: the service's spans go to its own
 * exporter, and a process embedding the library keeps its own global provider.
 */
export function startTracing(env: NodeJS.ProcessEnv, logger: Logger, version: string): TracingHandle {
  const settings = tracingSettings(env);
  if (!settings.enabled) return OFF;
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: settings.serviceName,
      [ATTR_SERVICE_VERSION]: version,
    }),
    sampler: sampler(settings.sampler, settings.ratio),
    // Headers, timeout and compression still come from the standard OTEL_EXPORTER_OTLP_* variables.
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: settings.tracesUrl }))],
  });
  // The origin only: a URL's user info or query could hold a collector credential.
  logger.info(
    { collector: new URL(settings.tracesUrl).origin, sampler: settings.sampler },
    'exporting traces (OTLP/HTTP)',
  );
  return {
    tracer: provider.getTracer('grantkeeper', version),
    shutdown: async () => {
      const outcome = await withTimeout(
        provider.shutdown().catch(() => 'failed' as const),
        TRACE_FLUSH_WAIT_MS,
      );
      if (outcome !== undefined) {
        const why = outcome === TIMED_OUT ? 'timeout' : outcome;
        logger.warn({ waitedMs: TRACE_FLUSH_WAIT_MS, outcome: why }, 'the last spans could not be exported');
      }
    },
  };
}

function sampler(kind: TraceSampler, ratio: number): Sampler {
  switch (kind) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}
