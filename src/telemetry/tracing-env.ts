import { z } from 'zod';
import { GrantkeeperError } from '../errors/grantkeeper-error.js';

export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;
export type TraceSampler = (typeof TRACE_SAMPLERS)[number];

export type TracingSettings =
  | { enabled: false }
  | {
      enabled: true;
      /** Where spans are POSTed (OTLP/HTTP JSON). */
      tracesUrl: string;
      serviceName: string;
      sampler: TraceSampler;
      /** For the ratio samplers. */
      ratio: number;
    };

const otlpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });

// The standard OTel SDK variables (opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables).
const tracingEnvSchema = z.object({
  OTEL_SDK_DISABLED: z
    .string()
    .optional()
    .transform((v) => v?.trim().toLowerCase() === 'true'),
  OTEL_TRACES_EXPORTER: z.enum(['otlp', 'none'], { error: 'expected otlp or none' }).default('otlp'),
  OTEL_EXPORTER_OTLP_ENDPOINT: otlpUrl.optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlpUrl.optional(),
  OTEL_SERVICE_NAME: z.string().trim().min(1).max(256).default('grantkeeper'),
  OTEL_TRACES_SAMPLER: z
    .enum(TRACE_SAMPLERS, { error: `expected one of ${TRACE_SAMPLERS.join(', ')}` })
    .default('parentbased_always_on'),
  OTEL_TRACES_SAMPLER_ARG: z.preprocess(
    (v) => (typeof v === 'string' ? Number(v) : v),
    z.number({ error: 'expected a number from 0 to 1' }).min(0).max(1).default(1),
  ),
});

/**
 * Tracing is on only when an OTLP endpoint is set (and the SDK is not disabled): off by default.
 * An empty variable counts as unset, as the spec says. A bad value is one clear error that names
 * the variable but never repeats a URL, which may carry credentials.
 */
export function tracingSettings(env: NodeJS.ProcessEnv): TracingSettings {
  const input = Object.fromEntries(
    Object.keys(tracingEnvSchema.shape).flatMap((name) => {
      const value = env[name]?.trim();
      return value ? [[name, value]] : [];
    }),
  );
  const parsed = tracingEnvSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${String(i.path[0])}: ${i.message}`);
    throw new GrantkeeperError('bad_config', `invalid tracing configuration: ${issues.join('; ')}`);
  }
  const e = parsed.data;
  const tracesUrl =
    e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (e.OTEL_EXPORTER_OTLP_ENDPOINT && `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`);
  if (e.OTEL_SDK_DISABLED || e.OTEL_TRACES_EXPORTER === 'none' || !tracesUrl) return { enabled: false };
  return {
    enabled: true,
    tracesUrl,
    serviceName: e.OTEL_SERVICE_NAME,
    sampler: e.OTEL_TRACES_SAMPLER,
    ratio: e.OTEL_TRACES_SAMPLER_ARG,
  };
}
