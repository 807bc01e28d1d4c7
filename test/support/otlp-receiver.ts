import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An OTLP/JSON attribute value; the exporter encodes numbers as intValue (sometimes a string). */
type AnyValue = {
  stringValue?: string;
  intValue?: number | string;
  boolValue?: boolean;
  doubleValue?: number;
};

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  status: { code?: number; message?: string };
  events: unknown[];
}

export interface OtlpReceiver {
  /** The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it. */
  url: string;
  /** Every request body as received, for secret scans that must see everything that left. */
  rawBodies: string[];
  spans(): ReceivedSpan[];
  resourceAttributes(): Array<Record<string, string | number | boolean>>;
  close(): Promise<void>;
}

interface ExportBody {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: AnyValue }> };
    scopeSpans?: Array<{
      spans?: Array<
        Omit<ReceivedSpan, 'attributes' | 'parentSpanId'> & {
          parentSpanId?: string;
          attributes?: Array<{ key: string; value: AnyValue }>;
        }
      >;
    }>;
  }>;
}

function flatten(attributes: Array<{ key: string; value: AnyValue }> = []) {
  return Object.fromEntries(
    attributes.map(({ key, value }) => [
      key,
      value.stringValue ??
        (value.intValue === undefined ? undefined : Number(value.intValue)) ??
        value.boolValue ??
        value.doubleValue ??
        '',
    ]),
  );
}

/** A collector on 127.0.0.1 that takes OTLP/HTTP JSON trace exports and keeps them. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const rawBodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') {
        rawBodies.push(Buffer.concat(chunks).toString('utf8'));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } else {
        res.writeHead(404).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const bodies = () => rawBodies.map((raw) => JSON.parse(raw) as ExportBody);
  return {
    url: `http://127.0.0.1:${port}`,
    rawBodies,
    spans: () =>
      bodies().flatMap((b) =>
        (b.resourceSpans ?? []).flatMap((r) =>
          (r.scopeSpans ?? []).flatMap((s) =>
            (s.spans ?? []).map((span) => ({
              ...span,
              parentSpanId: span.parentSpanId ?? '',
              attributes: flatten(span.attributes),
              status: span.status ?? {},
              events: span.events ?? [],
            })),
          ),
        ),
      ),
    resourceAttributes: () =>
      bodies().flatMap((b) => (b.resourceSpans ?? []).map((r) => flatten(r.resource?.attributes))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
