import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { errorClass, type SpanFacts, type SpanName, toAttributes } from './span-policy.js';

export interface TracePolicy {
  /** Whether spans carry the grant's id and label (GRANTKEEPER_TRACE_GRANT_IDS). */
  grantIdentity: boolean;
}

/**
 * One of our spans. Attributes go in only through the span policy and errors only as a code, so
 * nothing else can reach an exporter. Parents are passed explicitly (no context manager is
 * installed, and none is needed for spans that are all ours).
 */
export class TraceSpan {
  constructor(
    private readonly span: Span,
    private readonly tracer: Tracer,
    private readonly policy: TracePolicy,
  ) {}

  /** False when tracing is off or this trace is sampled out: then nothing below costs anything. */
  get recording(): boolean {
    return this.span.isRecording();
  }

  child(name: SpanName, facts: SpanFacts = {}, kind = SpanKind.INTERNAL): TraceSpan {
    // A span that is not recorded has children that are not either: skip their allocation.
    if (!this.recording) return this;
    const parent = trace.setSpan(ROOT_CONTEXT, this.span);
    const span = this.tracer.startSpan(name, { kind, attributes: toAttributes(facts) }, parent);
    return new TraceSpan(span, this.tracer, this.policy);
  }

  set(facts: SpanFacts): this {
    if (this.recording) this.span.setAttributes(toAttributes(facts));
    return this;
  }

  /** The grant's id and label, only when the operator turned them on. */
  identify(grant: { id: string; label: string }): this {
    if (this.recording && this.policy.grantIdentity) {
      this.span.setAttributes(toAttributes({ grantId: grant.id, grantLabel: grant.label }));
    }
    return this;
  }

  /** Marks the span failed with a code (a vetted error code or a class name): never a message. */
  fail(errorCode: string, facts: SpanFacts = {}): this {
    if (!this.recording) return this;
    this.span.setAttributes(toAttributes({ ...facts, errorCode }));
    this.span.setStatus({ code: SpanStatusCode.ERROR, message: errorCode });
    return this;
  }

  end(): void {
    this.span.end();
  }
}

/** Starts root spans under one tracer and policy; the engine holds one. */
export class Tracing {
  constructor(
    private readonly tracer: Tracer,
    private readonly policy: TracePolicy,
  ) {}

  start(name: SpanName, facts: SpanFacts = {}): TraceSpan {
    const span = this.tracer.startSpan(name, { attributes: toAttributes(facts) }, ROOT_CONTEXT);
    return new TraceSpan(span, this.tracer, this.policy);
  }
}

/** For callers that trace nothing: never recording, whatever tracer provider is registered. */
export const NO_SPAN = new TraceSpan(
  trace.wrapSpanContext(INVALID_SPAN_CONTEXT),
  trace.getTracer('grantkeeper'),
  {
    grantIdentity: false,
  },
);

/** Runs `work` as `span`'s operation: ended when it settles, failed with the error's class name. */
export async function inSpan<T>(span: TraceSpan, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    span.fail(errorClass(err));
    throw err;
  } finally {
    span.end();
  }
}
