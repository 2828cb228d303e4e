/**
 * One invocation in flight: its state, its deadline and the sink the instance streams its
 * response into. One object per request instead of a closure per callback (a dozen closures
 * and a sink object per request before), and its deadline is an entry in a shared
 * {@link Deadlines} list instead of a timer of its own.
 */
import { NimbusError } from "../errors.ts";
import type { Instance, OutboundCall, OutboundSpan, ResponseSink } from "../executors/types.ts";
import { InvocationTrace } from "../observability/invocation-trace.ts";
import { formatTraceparent, type Tracer } from "../observability/tracing.ts";
import type { InvokeMeta, LogMeta } from "../runtime/protocol.ts";
import type { VersionPool } from "../scheduler/pool.ts";
import type { VersionRecord } from "../store/types.ts";
import type { DeadlineEntry, Deadlines } from "./deadlines.ts";
import type { InvokeRequest, Responder } from "./invoker.ts";
import { InvocationLogBudget, type LogQuota } from "./log-quota.ts";
import type { Recorder } from "./recorder.ts";

/** Metadata headers Nimbus adds to every function response. */
export const H = {
  cold: "x-nimbus-cold-start",
  id: "x-nimbus-invocation-id",
  version: "x-nimbus-version",
} as const;

/** What an invocation needs from its invoker. */
export interface InvocationHost {
  readonly recorder: Recorder;
  readonly logQuota: LogQuota;
  readonly deadlines: Deadlines;
  /** Traces invocations when set (`--otlp-endpoint`). */
  readonly tracer: Tracer | undefined;
  poolFor(v: VersionRecord): VersionPool;
  /** The invocation is over (recorded): the invoker's count of running ones goes down. */
  ended(): void;
}

/** One running invocation; also the {@link ResponseSink} its instance writes to. */
export class Invocation implements ResponseSink, DeadlineEntry {
  private readonly host: InvocationHost;
  private readonly req: InvokeRequest;
  private readonly v: VersionRecord;
  private readonly responder: Responder;
  readonly invocationId: string;
  private readonly start: number;
  private readonly t0: number;
  private cold = false;
  private status = 0;
  private errorCode: string | null = null;
  private cpuMs = 0;
  private firstByteMs: number | null = null;
  /** Time until an instance was leased (queueing and cold start), ms. */
  private acquireMs: number | null = null;
  private headersSent = false;
  private recorded = false;
  /** The response went out in full; the invocation may still run `waitUntil` work. */
  private responded = false;
  private pool: VersionPool | undefined;
  private instance: Instance | undefined;
  private leased = false;
  private released = false;
  private memory: number;
  private timeoutMs = 0;
  /** Log budget, made on the first line (most invocations log nothing). */
  private budget: InvocationLogBudget | undefined;
  private reported = 0;
  /** The timer of `waitUntil` work after the response (rare: not on the deadline lists). */
  private bgTimer: NodeJS.Timeout | undefined;
  /** The invocation's spans, when tracing is on. */
  private readonly trace: InvocationTrace | undefined;
  dlPrev: DeadlineEntry | undefined = undefined;
  dlNext: DeadlineEntry | undefined = undefined;
  dlAt = -1;
  dlList: DeadlineEntry["dlList"] = undefined;

  constructor(
    host: InvocationHost,
    req: InvokeRequest,
    v: VersionRecord,
    responder: Responder,
    invocationId: string,
  ) {
    this.host = host;
    this.req = req;
    this.v = v;
    this.responder = responder;
    this.invocationId = invocationId;
    this.start = Date.now();
    this.t0 = performance.now();
    this.memory = v.config.memory;
    this.trace = host.tracer && new InvocationTrace(host.tracer, req, v.name, v.version, invocationId);
  }

  /** Leases an instance and starts the invocation on it. Never throws. */
  async run(): Promise<void> {
    try {
      const pool = this.host.poolFor(this.v);
      this.pool = pool;
      this.memory = pool.config.memory;
      this.timeoutMs = pool.config.timeoutMs;
      const lease = await pool.acquire();
      this.leased = true;
      this.acquireMs = performance.now() - this.t0;
      this.cold = lease.cold;
      const instance = lease.instance;
      this.instance = instance;
      const req = this.req;
      const trace = this.trace;
      trace?.acquired(lease.cold, instance.startPhases);
      const meta: InvokeMeta = {
        invocationId: this.invocationId,
        method: req.method,
        url: `http://${req.host || "localhost"}${req.path}`,
        headers: trace ? trace.headers(req.headers) : req.headers,
        deadline: Date.now() + this.timeoutMs,
        sourceIp: req.sourceIp,
        trigger: req.trigger,
      };
      if (req.event?.kind) meta.kind = req.event.kind;
      if (trace) meta.traceparent = formatTraceparent(trace.context);
      this.host.deadlines.add(this, this.timeoutMs);
      // A caller that hangs up stops the function's response instead of letting it stream on.
      this.responder.onAbort?.(this.onCallerGone);
      instance.invoke(meta, req.body, this);
    } catch (err) {
      const e =
        err instanceof NimbusError ? err : new NimbusError("NIMBUS_INTERNAL", undefined, { cause: err });
      if (e.code === "NIMBUS_FUNCTION_ERROR") {
        // The new instance failed to load the module (it threw at import).
        this.platformLog(`${e.message}\n${(e.details as { stack?: string })?.stack ?? ""}`);
        this.failWith(
          new NimbusError("NIMBUS_FUNCTION_ERROR", undefined, {
            details: { invocationId: this.invocationId },
          }),
        );
      } else this.failWith(e);
    }
  }

  private readonly onCallerGone = (): void => {
    if (!this.recorded) this.instance?.cancel(this);
  };

  /** The function's timeout passed before its response ended. */
  onDeadline(): void {
    this.instance?.kill(
      new NimbusError(
        "NIMBUS_TIMEOUT",
        `The function did not respond within its timeout of ${this.timeoutMs} ms; its instance was stopped. Raise 'timeout' in its config.`,
      ),
      this,
    );
  }

  private releaseSlot(): void {
    if (!this.leased || this.released) return;
    this.released = true;
    this.pool?.release();
  }

  private store(level: LogMeta["level"], t: number, msg: string): void {
    const v = this.v;
    this.host.recorder.log({
      tenant: v.tenant,
      fn: v.name,
      version: v.version,
      invocationId: this.invocationId,
      t,
      level,
      msg,
    });
  }

  /** One counted marker for the lines dropped since the last one. */
  private reportDropped(): void {
    const budget = this.budget;
    if (!budget || budget.dropped === this.reported) return;
    this.store("warn", Date.now(), this.host.logQuota.marker(budget.dropped - this.reported, budget.reason));
    this.reported = budget.dropped;
  }

  /** The platform's own lines about the invocation are not the function's to spend. */
  private platformLog(msg: string): void {
    this.store("error", Date.now(), this.host.logQuota.cut(msg));
  }

  private finish(): void {
    if (this.recorded) return;
    this.recorded = true;
    this.reportDropped();
    this.host.deadlines.cancel(this);
    if (this.bgTimer) clearTimeout(this.bgTimer);
    // Until the invocation is really over: its response and its `waitUntil` work (as
    // Lambda bills until the handler returns, and Workers meters waitUntil time).
    const durationMs = performance.now() - this.t0;
    // Only time on an instance is billed: a request refused before it ran (throttled,
    // shutting down) costs nothing, as on Lambda.
    const billedMs = this.leased ? Math.max(1, Math.ceil(durationMs)) : 0;
    const { req, v, memory, start } = this;
    const event = req.event;
    this.host.recorder.record({
      id: this.invocationId,
      tenant: v.tenant,
      fn: v.name,
      version: v.version,
      trigger: req.trigger,
      start,
      durationMs,
      billedMs,
      memoryMB: memory,
      gbSeconds: (memory / 1024) * (billedMs / 1000),
      cpuMs: this.cpuMs,
      coldStart: this.cold,
      status: this.status,
      errorCode: this.errorCode,
      firstByteMs: this.firstByteMs,
      eventId: event?.id ?? null,
      attempt: event?.attempt ?? null,
      queueWaitMs: event ? Math.max(0, start - event.enqueuedAt) : null,
      e2eMs: event ? Math.max(0, start + durationMs - event.enqueuedAt) : null,
      acquireMs: this.acquireMs,
    });
    this.trace?.end(this.status, this.errorCode);
    this.releaseSlot();
    this.host.ended();
  }

  /** Fails the invocation (the caller gets `err` unless its response already went out). */
  failWith(err: NimbusError, measuredCpu?: number): void {
    if (this.recorded) return;
    if (measuredCpu !== undefined) this.cpuMs = Math.max(this.cpuMs, measuredCpu);
    this.errorCode = err.code;
    if (this.responded) {
      // The response went out; what failed is its waitUntil work (e.g. the instance died).
      this.finish();
      return;
    }
    this.status = this.headersSent ? this.status : err.status;
    this.responder.error(err, this.headersSent);
    this.finish();
  }

  // ---- ResponseSink: what the instance sends ----

  head(s: number, headers: [string, string][]): void {
    if (this.recorded) return;
    this.status = s;
    this.headersSent = true;
    this.firstByteMs = performance.now() - this.t0;
    headers.push(
      [H.cold, this.cold ? "1" : "0"],
      [H.id, this.invocationId],
      [H.version, String(this.v.version)],
    );
    this.responder.head(s, headers);
  }

  chunk(data: Buffer, consumed: () => void): void {
    if (!this.recorded) this.responder.chunk(data, consumed);
    else consumed();
  }

  end(measuredCpu: number, pending: boolean): void {
    if (this.recorded || this.responded) return;
    this.cpuMs = measuredCpu;
    this.responded = true;
    this.responder.end();
    if (!pending) {
      this.finish();
      return;
    }
    // The caller has its response: the slot serves others, while the waitUntil work is
    // billed until it settles, for at most the function's timeout (then its instance is
    // stopped, as Workers cancels waitUntil work past its limit).
    this.releaseSlot();
    this.host.deadlines.cancel(this);
    const timeoutMs = this.timeoutMs;
    this.bgTimer = setTimeout(() => {
      const err = new NimbusError(
        "NIMBUS_TIMEOUT",
        `The function's waitUntil work did not settle within its timeout of ${timeoutMs} ms after the response; its instance was stopped.`,
      );
      // The instance fails this sink as it goes (with the CPU used until then), which logs
      // and records it; should it not, the record is written anyway.
      this.instance?.kill(err, this);
      this.bgTimer = setTimeout(() => this.failWith(err), 5000);
    }, timeoutMs);
  }

  fail(err: NimbusError, measuredCpu?: number): void {
    // The function's own failures were logged (with the source-mapped stack) by the runtime;
    // the caller sees only the generic message and the invocation id.
    const own = err.code === "NIMBUS_FUNCTION_ERROR" || err.code === "NIMBUS_BAD_RESPONSE";
    if (!own) this.platformLog(`${err.code}: ${err.message}`);
    // What a misbehaving instance sent goes to the function's log, not to the caller.
    const generic = own || err.code === "NIMBUS_INSTANCE_PROTOCOL";
    this.failWith(
      new NimbusError(err.code, generic ? undefined : err.message, {
        details: { invocationId: this.invocationId },
      }),
      measuredCpu,
    );
  }

  /** The function's own lines: cut, and kept only within the log quotas. */
  /** A client span for the function's own outbound call (tracing on). */
  outbound(call: OutboundCall): OutboundSpan | undefined {
    return this.recorded ? undefined : this.trace?.call(call);
  }

  log(line: LogMeta): void {
    const quota = this.host.logQuota;
    const msg = quota.cut(typeof line.msg === "string" ? line.msg : String(line.msg));
    const now = Date.now();
    this.budget ??= new InvocationLogBudget();
    if (quota.admit(`${this.v.tenant}/${this.v.name}`, msg.length, now, this.budget) !== "ok") return;
    // A line dated in the future would outlive the retention period.
    this.store(line.level, Number.isFinite(line.t) ? Math.min(line.t, now) : now, msg);
  }

  done(measuredCpu: number): void {
    // Lines dropped by waitUntil work after the response are reported when it settles.
    this.reportDropped();
    // Only after the response ended with work pending (an early DONE would stop billing).
    if (this.recorded || !this.responded) return;
    this.cpuMs = Math.max(this.cpuMs, measuredCpu);
    this.finish();
  }
}
