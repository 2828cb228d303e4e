/**
 * The spans of one invocation, created at the invoker's few fixed points:
 *
 * ```
 * nimbus.gateway (server; nimbus.delivery for a queued event)   parent: the caller's traceparent
 * ├─ nimbus.queue_wait          enqueue → attempt start (queued events only)
 * ├─ nimbus.cold_start          waiting for a new instance (cold starts only)
 * │  ├─ nimbus.sandbox_start    a runtime process / isolate made ready
 * │  └─ nimbus.module_load      the function's module loaded
 * └─ nimbus.handler             the function ran; its traceparent is handed to the function
 *    └─ fetch <host>            (client) the function's own outbound fetch (isolate: per request,
 *                               with `traceparent` set to it unless the function set one;
 *                               process: per egress connection, at most {@link MAX_OUTBOUND})
 * ```
 */
import type { OutboundCall, StartPhases } from "../executors/types.ts";
import {
  formatTraceparent,
  nowMs,
  parseTraceparent,
  type Span,
  type SpanContext,
  SpanKind,
  type Tracer,
} from "./tracing.ts";

/** What the invoker knows of a request when it starts (a subset of InvokeRequest). */
export interface TracedRequest {
  headers: [string, string][];
  trigger: string;
  method: string;
  event?: { enqueuedAt: number; attempt: number };
}

/** Outbound spans per invocation, at most (a function looping over fetch must not flood the collector). */
export const MAX_OUTBOUND = 64;

/** The spans of one invocation. */
export class InvocationTrace {
  private readonly tracer: Tracer;
  private readonly root: Span;
  private handler: Span | undefined;
  /** Outbound spans started; those not ended yet end with the invocation. */
  private outbound: Span[] | undefined;
  private outboundDropped = 0;
  private readonly acquireStart: number;

  constructor(tracer: Tracer, req: TracedRequest, fn: string, version: number, invocationId: string) {
    this.tracer = tracer;
    let incoming: string | undefined;
    for (const [k, v] of req.headers) {
      if (k === "traceparent") {
        // Two traceparent headers are malformed: a new trace.
        incoming = incoming === undefined ? v : "";
      }
    }
    const parent = parseTraceparent(incoming);
    const now = nowMs();
    const queued = req.event !== undefined;
    const start = queued ? Math.min(now, req.event!.enqueuedAt) : now;
    this.root = tracer.start(queued ? "nimbus.delivery" : "nimbus.gateway", parent, SpanKind.server, start, {
      "faas.name": fn,
      "faas.version": String(version),
      "faas.trigger": req.trigger,
      "faas.invocation_id": invocationId,
      "http.request.method": req.method.slice(0, 16),
    });
    if (queued) {
      this.root.set("messaging.attempt", req.event!.attempt);
      tracer.start("nimbus.queue_wait", this.root.context, SpanKind.consumer, start).end(now);
    }
    this.acquireStart = now;
  }

  /** The instance was granted; `phases` when it was started for this request. */
  acquired(cold: boolean, phases: StartPhases | undefined): void {
    const now = nowMs();
    this.root.set("faas.coldstart", cold);
    if (cold) {
      const span = this.tracer.start(
        "nimbus.cold_start",
        this.root.context,
        SpanKind.internal,
        this.acquireStart,
      );
      if (phases) {
        // The executor measured durations; they end when the instance was handed over.
        const loadStart = Math.max(this.acquireStart, now - phases.loadMs);
        const sandboxStart = Math.max(this.acquireStart, loadStart - phases.sandboxMs);
        this.tracer
          .start("nimbus.sandbox_start", span.context, SpanKind.internal, sandboxStart)
          .end(loadStart);
        this.tracer.start("nimbus.module_load", span.context, SpanKind.internal, loadStart).end(now);
      }
      span.end(now);
    }
    this.handler = this.tracer.start("nimbus.handler", this.root.context, SpanKind.internal, now);
  }

  /** The trace context handed to the function (its own calls continue the trace). */
  get context(): SpanContext {
    return (this.handler ?? this.root).context;
  }

  /** The request headers the function sees: the caller's, with `traceparent` set to the handler span. */
  headers(headers: [string, string][]): [string, string][] {
    const out: [string, string][] = [];
    for (const h of headers) if (h[0] !== "traceparent") out.push(h);
    out.push(["traceparent", formatTraceparent(this.context)]);
    return out;
  }

  /**
   * A client span for one outbound call of the function, under the handler span; undefined
   * past {@link MAX_OUTBOUND} (counted in the handler's `nimbus.outbound.dropped`) or before
   * the handler started. Times the executor reports are clamped into the handler's.
   */
  call(c: OutboundCall): Span | undefined {
    const handler = this.handler;
    if (!handler) return undefined;
    this.outbound ??= [];
    if (this.outbound.length >= MAX_OUTBOUND) {
      this.outboundDropped++;
      return undefined;
    }
    const now = nowMs();
    const start = Math.min(now, Math.max(handler.startMs, c.startMs ?? now));
    const attrs: Record<string, string | number | boolean> = {
      "server.address": c.host,
      "server.port": c.port,
    };
    if (c.method) attrs["http.request.method"] = c.method;
    if (c.scheme) attrs["url.scheme"] = c.scheme;
    const span = this.tracer.start(
      c.method ? `fetch ${c.host}` : `connect ${c.host}`,
      handler.context,
      SpanKind.client,
      start,
      attrs,
      c.spanId,
    );
    this.outbound.push(span);
    return span;
  }

  /** The invocation ended. */
  end(status: number, errorCode: string | null): void {
    const now = nowMs();
    if (this.outbound) {
      // An egress connection kept alive past the invocation is not its work any more.
      for (const s of this.outbound) s.end(now);
      if (this.outboundDropped > 0) this.handler?.set("nimbus.outbound.dropped", this.outboundDropped);
    }
    if (status > 0) this.root.set("http.response.status_code", status);
    if (errorCode) {
      this.root.error(errorCode);
      this.handler?.error(errorCode);
    }
    this.handler?.end(now);
    this.root.end(now);
  }
}
