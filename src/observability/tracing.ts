/**
 * Traces: W3C trace context in, spans per invocation, OTLP/HTTP (JSON) out.
 *
 * A minimal exporter instead of the OpenTelemetry SDK, on purpose: the platform creates its
 * spans at a handful of known points with explicit parents (no context propagation through
 * async hooks is needed, and none is paid for on the hot path), and the OTLP/HTTP JSON
 * encoding of a span is a plain object. What the SDK's batch processor gives is kept: spans
 * are batched, the queue is bounded, and spans that do not fit (or whose export failed) are
 * counted as dropped, never buffered without end.
 */
import { randomBytes } from "node:crypto";

/** A span's identity, as carried in `traceparent`. */
export interface SpanContext {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero. */
  spanId: string;
  /** Sampled flag (bit 0 of the trace flags). */
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/**
 * Parses a W3C `traceparent` header; undefined for anything malformed (the caller then starts
 * a new trace). Untrusted input: bounded length, strict hex, all-zero ids and version `ff`
 * refused, version 00 without trailing data (as the spec requires).
 */
export function parseTraceparent(header: string | undefined): SpanContext | undefined {
  if (typeof header !== "string" || header.length > 512) return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId: traceId!, spanId: spanId!, sampled: (Number.parseInt(flags!, 16) & 1) === 1 };
}

/** The `traceparent` header value of a span context. */
export function formatTraceparent(c: SpanContext): string {
  return `00-${c.traceId}-${c.spanId}-${c.sampled ? "01" : "00"}`;
}

/** A new random span id. */
export function newSpanId(): string {
  return randomBytes(8).toString("hex");
}

/** A new random trace id. */
export function newTraceId(): string {
  return randomBytes(16).toString("hex");
}

/** OTLP span kinds used here. */
export const SpanKind = { internal: 1, server: 2, client: 3, consumer: 5 } as const;

/** Attribute values a span may carry. */
export type AttrValue = string | number | boolean;

/** One finished span. */
export interface SpanData {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  kind: number;
  /** ms since the epoch (fractional). */
  startMs: number;
  endMs: number;
  attributes: Record<string, AttrValue>;
  /** OTLP status: 0 unset, 1 ok, 2 error. */
  status: { code: 0 | 1 | 2; message?: string };
}

/** A span being recorded. */
export class Span {
  readonly context: SpanContext;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: number;
  readonly startMs: number;
  readonly attributes: Record<string, AttrValue>;
  private status: SpanData["status"] = { code: 0 };
  private ended = false;
  private readonly sink: (s: SpanData) => void;

  constructor(
    sink: (s: SpanData) => void,
    name: string,
    parent: SpanContext | undefined,
    kind: number,
    startMs: number,
    attributes: Record<string, AttrValue> = {},
    spanId: string = newSpanId(),
  ) {
    this.sink = sink;
    this.name = name;
    this.kind = kind;
    this.startMs = startMs;
    this.attributes = attributes;
    this.parentSpanId = parent?.spanId;
    this.context = { traceId: parent?.traceId ?? newTraceId(), spanId, sampled: true };
  }

  /** Sets an attribute. */
  set(key: string, value: AttrValue): this {
    this.attributes[key] = value;
    return this;
  }

  /** Marks the span failed. */
  error(message: string): this {
    this.status = { code: 2, message };
    return this;
  }

  /** Ends the span (once; later calls do nothing). */
  end(endMs = nowMs()): void {
    if (this.ended) return;
    this.ended = true;
    this.sink({
      traceId: this.context.traceId,
      spanId: this.context.spanId,
      parentSpanId: this.parentSpanId,
      name: this.name,
      kind: this.kind,
      startMs: this.startMs,
      endMs: Math.max(endMs, this.startMs),
      attributes: this.attributes,
      status: this.status,
    });
  }
}

/** Wall-clock ms with sub-ms precision (span times). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Options of {@link OtlpExporter}. */
export interface OtlpExporterOptions {
  /** Collector base URL (`/v1/traces` is added when the URL has no path) or full traces URL. */
  endpoint: string;
  /** Spans waiting for export, at most; more are dropped and counted. @default 2048 */
  maxQueue?: number;
  /** Spans per request. @default 512 */
  maxBatch?: number;
  /** How often a partial batch is sent, ms. @default 1000 */
  intervalMs?: number;
  /** One export request's time limit, ms. @default 10000 */
  timeoutMs?: number;
  /** `service.name` resource attribute. @default "nimbus" */
  serviceName?: string;
  /** Told of every dropped span count (metrics). */
  onDrop?: (n: number) => void;
  /** Told of export failures (platform log). */
  onError?: (err: unknown) => void;
}

/** Resolves the OTLP traces URL from `--otlp-endpoint`. */
export function tracesUrl(endpoint: string): string {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new Error(
      `--otlp-endpoint must be an http(s) URL such as http://127.0.0.1:4318, got '${endpoint}'.`,
    );
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Error(`--otlp-endpoint must be an http(s) URL, got '${endpoint}'.`);
  }
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/v1/traces";
  return u.toString();
}

const hexToBase = (hex: string): string => hex;

function toOtlpAttrs(a: Record<string, AttrValue>): unknown[] {
  return Object.entries(a).map(([key, v]) => ({
    key,
    value:
      typeof v === "string"
        ? { stringValue: v }
        : typeof v === "boolean"
          ? { boolValue: v }
          : Number.isInteger(v)
            ? { intValue: String(v) }
            : { doubleValue: v },
  }));
}

const nanos = (ms: number): string => (BigInt(Math.round(ms * 1000)) * 1000n).toString();

/** The OTLP/HTTP JSON body for a batch of spans (trace and span ids as hex, as the JSON mapping says). */
export function otlpBody(spans: readonly SpanData[], serviceName: string): unknown {
  return {
    resourceSpans: [
      {
        resource: { attributes: toOtlpAttrs({ "service.name": serviceName }) },
        scopeSpans: [
          {
            scope: { name: "nimbus" },
            spans: spans.map((s) => ({
              traceId: hexToBase(s.traceId),
              spanId: hexToBase(s.spanId),
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: s.kind,
              startTimeUnixNano: nanos(s.startMs),
              endTimeUnixNano: nanos(s.endMs),
              attributes: toOtlpAttrs(s.attributes),
              status: s.status.message ? s.status : { code: s.status.code },
            })),
          },
        ],
      },
    ],
  };
}

/** Batches finished spans and posts them to an OTLP/HTTP collector (JSON encoding). */
export class OtlpExporter {
  private readonly url: string;
  private readonly o: Required<Omit<OtlpExporterOptions, "onDrop" | "onError">> &
    Pick<OtlpExporterOptions, "onDrop" | "onError">;
  private queue: SpanData[] = [];
  private readonly timer: NodeJS.Timeout;
  private inflight: Promise<void> = Promise.resolve();
  private sending = false;
  /** Spans dropped since start (queue full or export failed). */
  dropped = 0;
  /** Spans the collector accepted since start. */
  exported = 0;

  constructor(opts: OtlpExporterOptions) {
    this.url = tracesUrl(opts.endpoint);
    this.o = {
      maxQueue: 2048,
      maxBatch: 512,
      intervalMs: 1000,
      timeoutMs: 10_000,
      serviceName: "nimbus",
      ...opts,
    };
    this.timer = setInterval(() => void this.flush(), this.o.intervalMs);
    this.timer.unref();
  }

  /** Queues a finished span (drops and counts it when the queue is full). */
  push(span: SpanData): void {
    if (this.queue.length >= this.o.maxQueue) {
      this.drop(1);
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.o.maxBatch && !this.sending) void this.flush();
  }

  private drop(n: number): void {
    this.dropped += n;
    this.o.onDrop?.(n);
  }

  /** Sends what is queued (one request per batch, one request at a time). */
  flush(): Promise<void> {
    if (this.sending || this.queue.length === 0) return this.inflight;
    this.sending = true;
    this.inflight = (async () => {
      try {
        while (this.queue.length > 0) {
          const batch = this.queue.splice(0, this.o.maxBatch);
          try {
            const res = await fetch(this.url, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(otlpBody(batch, this.o.serviceName)),
              signal: AbortSignal.timeout(this.o.timeoutMs),
            });
            await res.arrayBuffer().catch(() => undefined);
            if (!res.ok) throw new Error(`the OTLP collector answered ${res.status}`);
            this.exported += batch.length;
          } catch (err) {
            // Not retried: a collector that is down must not make the platform hold spans.
            this.drop(batch.length);
            this.o.onError?.(err);
            break;
          }
        }
      } finally {
        this.sending = false;
      }
    })();
    return this.inflight;
  }

  /** Sends what is left and stops. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.inflight;
    await this.flush();
    // What a failing collector left queued is lost with the process: counted, not kept.
    if (this.queue.length > 0) {
      this.drop(this.queue.length);
      this.queue = [];
    }
  }
}

/** Creates spans and hands finished ones to the exporter. */
export class Tracer {
  private readonly exporter: OtlpExporter;
  private readonly sink: (s: SpanData) => void;

  constructor(exporter: OtlpExporter) {
    this.exporter = exporter;
    this.sink = (s) => this.exporter.push(s);
  }

  /** Starts a span under `parent` (a new trace when undefined). */
  start(
    name: string,
    parent: SpanContext | undefined,
    kind: number = SpanKind.internal,
    startMs = nowMs(),
    attributes?: Record<string, AttrValue>,
    spanId?: string,
  ): Span {
    return new Span(this.sink, name, parent, kind, startMs, attributes, spanId);
  }

  /** Sends what is left and stops. */
  close(): Promise<void> {
    return this.exporter.close();
  }
}
