/**
 * The invocation pipeline: resolve the version, lease an instance from the scheduler, run
 * the invocation under its deadline, stream the response to the responder, and record
 * metering and logs.
 */
import { randomUUID } from "node:crypto";
import { clampToLimits, DEFAULT_LIMITS, type ServerLimits } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import type { ResponseSink } from "../executors/types.ts";
import type { InvokeMeta, LogMeta } from "../runtime/protocol.ts";
import type { Scheduler, VersionPool } from "../scheduler/pool.ts";
import type { VersionRecord } from "../store/types.ts";
import { InvocationLogBudget, LogQuota } from "./log-quota.ts";
import type { Recorder } from "./recorder.ts";
import type { Registry } from "./registry.ts";

/** One request to a function, as the gateway (or a trigger) hands it over. */
export interface InvokeRequest {
  tenant: string;
  name: string;
  /** A version number, or undefined for `latest`. */
  version?: number;
  method: string;
  /** Path below the function's mount, with the query string (e.g. `/a/b?x=1`). */
  path: string;
  /** Host the caller used (for the URL the function sees). */
  host: string;
  headers: [string, string][];
  body: Buffer;
  sourceIp: string;
  trigger: string;
  /** For a delivery of a queued event: its id, attempt number and enqueue time (ms since the epoch). */
  event?: { id: string; attempt: number; enqueuedAt: number; kind?: "event" | "scheduled" | "queue" };
}

/** Where the response goes (an HTTP response, or a buffer for `nimbus invoke`). */
export interface Responder {
  head(status: number, headers: [string, string][]): void;
  /**
   * A chunk of the body; call `consumed` once it left the platform's buffers (e.g. when the
   * socket drained), so the function may send more (flow control).
   */
  chunk(data: Buffer, consumed: () => void): void;
  end(): void;
  /** The invocation failed; `headersSent` tells whether head() was already called. */
  error(err: NimbusError, headersSent: boolean): void;
  /** Registers what to do when the caller goes away before the response ended. */
  onAbort?(cb: () => void): void;
}

/**
 * A time-ordered UUID (version 7: 48-bit milliseconds, then random bits). Invocation ids
 * sort by start time, and the records' primary-key index grows at its end instead of
 * dirtying a random page per insert (random v4 ids cost several times more disk writes).
 */
export function uuidv7(now = Date.now()): string {
  const r = randomUUID();
  const t = now.toString(16).padStart(12, "0");
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${r.slice(15)}`;
}

/** Metadata headers Nimbus adds to every function response. */
export const H = {
  cold: "x-nimbus-cold-start",
  id: "x-nimbus-invocation-id",
  version: "x-nimbus-version",
} as const;

/** The invoker. */
export class Invoker {
  private readonly registry: Registry;
  private readonly scheduler: Scheduler;
  private readonly recorder: Recorder;
  private draining = false;
  private active = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly limits: ServerLimits;

  /** The log quotas every invocation's lines pass through. */
  readonly logQuota: LogQuota;

  constructor(
    registry: Registry,
    scheduler: Scheduler,
    recorder: Recorder,
    logQuota = new LogQuota(),
    limits = DEFAULT_LIMITS,
  ) {
    this.registry = registry;
    this.scheduler = scheduler;
    this.recorder = recorder;
    this.logQuota = logQuota;
    this.limits = limits;
  }

  /** Resolves the version a request targets, or throws the catalogued 404. */
  resolve(tenant: string, name: string, version?: number): VersionRecord {
    const fn = this.registry.getFunction(tenant, name);
    if (!fn) {
      throw new NimbusError(
        "NIMBUS_FN_NOT_FOUND",
        `No function named '${name}'. List deployed functions with 'nimbus ls'.`,
      );
    }
    const v = this.registry.getVersion(tenant, name, version ?? fn.latest);
    if (!v) {
      throw new NimbusError(
        "NIMBUS_VERSION_NOT_FOUND",
        `Function '${name}' has no version ${version}. List them with 'nimbus versions ${name}'.`,
      );
    }
    return v;
  }

  /** The pool serving a version. */
  poolFor(v: VersionRecord): VersionPool {
    // A version deployed before the operator lowered a maximum runs within the new one.
    const config = clampToLimits(v.config, this.limits);
    return this.scheduler.pool(
      {
        functionName: v.name,
        tenant: v.tenant,
        version: v.version,
        codeDir: v.codeDir,
        memoryMB: config.memory,
        timeoutMs: config.timeoutMs,
        env: config.env,
        cpuMs: config.cpuMs,
        cpus: config.cpu,
        network: config.network,
        isolation: config.isolation,
      },
      config,
    );
  }

  /** Invocations now running. */
  get running(): number {
    return this.active;
  }

  /** Stops taking invocations; resolves when the running ones have finished. */
  drain(): Promise<void> {
    this.draining = true;
    if (this.active === 0) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  /**
   * Runs one invocation of an already-resolved version. Never throws: every failure goes to
   * `responder.error` with a catalogued code.
   */
  async invoke(req: InvokeRequest, v: VersionRecord, responder: Responder): Promise<void> {
    if (this.draining) {
      responder.error(
        new NimbusError("NIMBUS_UNAVAILABLE", "The server is shutting down; retry shortly."),
        false,
      );
      return;
    }
    this.active++;
    const invocationId = uuidv7();
    const start = Date.now();
    const t0 = performance.now();
    let cold = false;
    let status = 0;
    let errorCode: string | null = null;
    let cpuMs = 0;
    let firstByteMs: number | null = null;
    let headersSent = false;
    let recorded = false;
    /** The response went out in full; the invocation may still run `waitUntil` work. */
    let responded = false;
    let timer: NodeJS.Timeout | undefined;
    let pool: VersionPool | undefined;
    let leased = false;
    let released = false;
    const release = (): void => {
      if (!leased || released) return;
      released = true;
      pool?.release();
    };

    const quotaKey = `${v.tenant}/${v.name}`;
    const budget = new InvocationLogBudget();
    let reported = 0;
    const store = (level: LogMeta["level"], t: number, msg: string): void => {
      this.recorder.log({
        tenant: v.tenant,
        fn: v.name,
        version: v.version,
        invocationId,
        t,
        level,
        msg,
      });
    };
    // The function's own lines: cut, and kept only within the log quotas.
    const log = (line: LogMeta): void => {
      const msg = this.logQuota.cut(typeof line.msg === "string" ? line.msg : String(line.msg));
      const now = Date.now();
      if (this.logQuota.admit(quotaKey, msg.length, now, budget) !== "ok") return;
      // A line dated in the future would outlive the retention period.
      store(line.level, Number.isFinite(line.t) ? Math.min(line.t, now) : now, msg);
    };
    /** One counted marker for the lines dropped since the last one. */
    const reportDropped = (): void => {
      if (budget.dropped === reported) return;
      store("warn", Date.now(), this.logQuota.marker(budget.dropped - reported, budget.reason));
      reported = budget.dropped;
    };
    // The platform's own lines about the invocation are not the function's to spend.
    const platformLog = (msg: string): void => store("error", Date.now(), this.logQuota.cut(msg));
    const finish = (): void => {
      if (recorded) return;
      recorded = true;
      reportDropped();
      if (timer) clearTimeout(timer);
      // Until the invocation is really over: its response and its `waitUntil` work (as
      // Lambda bills until the handler returns, and Workers meters waitUntil time).
      const durationMs = performance.now() - t0;
      // Only time on an instance is billed: a request refused before it ran (throttled,
      // shutting down) costs nothing, as on Lambda.
      const billedMs = leased ? Math.max(1, Math.ceil(durationMs)) : 0;
      this.recorder.record({
        id: invocationId,
        tenant: v.tenant,
        fn: v.name,
        version: v.version,
        trigger: req.trigger,
        start,
        durationMs,
        billedMs,
        memoryMB: memory,
        gbSeconds: (memory / 1024) * (billedMs / 1000),
        cpuMs,
        coldStart: cold,
        status,
        errorCode,
        firstByteMs,
        eventId: req.event?.id ?? null,
        attempt: req.event?.attempt ?? null,
        queueWaitMs: req.event ? Math.max(0, start - req.event.enqueuedAt) : null,
        e2eMs: req.event ? Math.max(0, start + durationMs - req.event.enqueuedAt) : null,
      });
      release();
      this.active--;
      if (this.active === 0 && this.draining) for (const w of this.idleWaiters.splice(0)) w();
    };
    const fail = (err: NimbusError, measuredCpu?: number): void => {
      if (recorded) return;
      if (measuredCpu !== undefined) cpuMs = Math.max(cpuMs, measuredCpu);
      errorCode = err.code;
      if (responded) {
        // The response went out; what failed is its waitUntil work (e.g. the instance died).
        finish();
        return;
      }
      status = headersSent ? status : err.status;
      responder.error(err, headersSent);
      finish();
    };

    let memory = v.config.memory;
    try {
      pool = this.poolFor(v);
      memory = pool.config.memory;
      const timeoutMs = pool.config.timeoutMs;
      const lease = await pool.acquire();
      leased = true;
      cold = lease.cold;
      const instance = lease.instance;
      const url = `http://${req.host || "localhost"}${req.path}`;
      const meta: InvokeMeta = {
        invocationId,
        method: req.method,
        url,
        headers: req.headers,
        deadline: Date.now() + timeoutMs,
        sourceIp: req.sourceIp,
        trigger: req.trigger,
      };
      if (req.event?.kind) meta.kind = req.event.kind;
      const sink: ResponseSink = {
        head: (s, headers) => {
          if (recorded) return;
          status = s;
          headersSent = true;
          firstByteMs = performance.now() - t0;
          headers.push([H.cold, cold ? "1" : "0"], [H.id, invocationId], [H.version, String(v.version)]);
          responder.head(s, headers);
        },
        chunk: (data, consumed) => {
          if (!recorded) responder.chunk(data, consumed);
          else consumed();
        },
        end: (measuredCpu, pending) => {
          if (recorded || responded) return;
          cpuMs = measuredCpu;
          responded = true;
          responder.end();
          if (!pending) {
            finish();
            return;
          }
          // The caller has its response: the slot serves others, while the waitUntil work
          // is billed until it settles, for at most the function's timeout (then its
          // instance is stopped, as Workers cancels waitUntil work past its limit).
          release();
          if (timer) clearTimeout(timer);
          timer = setTimeout(() => {
            const err = new NimbusError(
              "NIMBUS_TIMEOUT",
              `The function's waitUntil work did not settle within its timeout of ${timeoutMs} ms after the response; its instance was stopped.`,
            );
            // The instance fails this sink as it goes (with the CPU used until then), which
            // logs and records it; should it not, the record is written anyway.
            instance.kill(err, sink);
            timer = setTimeout(() => fail(err), 5000);
          }, timeoutMs);
        },
        fail: (err, measuredCpu) => {
          // The function's own failures were logged (with the source-mapped stack) by the
          // runtime; the caller sees only the generic message and the invocation id.
          const own = err.code === "NIMBUS_FUNCTION_ERROR" || err.code === "NIMBUS_BAD_RESPONSE";
          if (!own) platformLog(`${err.code}: ${err.message}`);
          // What a misbehaving instance sent goes to the function's log, not to the caller.
          const generic = own || err.code === "NIMBUS_INSTANCE_PROTOCOL";
          fail(
            new NimbusError(err.code, generic ? undefined : err.message, { details: { invocationId } }),
            measuredCpu,
          );
        },
        log,
        done: (measuredCpu) => {
          // Lines dropped by waitUntil work after the response are reported when it settles.
          reportDropped();
          // Only after the response ended with work pending (an early DONE would stop billing).
          if (recorded || !responded) return;
          cpuMs = Math.max(cpuMs, measuredCpu);
          finish();
        },
      };
      timer = setTimeout(() => {
        instance.kill(
          new NimbusError(
            "NIMBUS_TIMEOUT",
            `The function did not respond within its timeout of ${timeoutMs} ms; its instance was stopped. Raise 'timeout' in its config.`,
          ),
          sink,
        );
      }, timeoutMs);
      // A caller that hangs up stops the function's response instead of letting it stream on.
      responder.onAbort?.(() => {
        if (!recorded) instance.cancel(sink);
      });
      instance.invoke(meta, req.body, sink);
    } catch (err) {
      const e =
        err instanceof NimbusError ? err : new NimbusError("NIMBUS_INTERNAL", undefined, { cause: err });
      if (e.code === "NIMBUS_FUNCTION_ERROR") {
        // The new instance failed to load the module (it threw at import).
        platformLog(`${e.message}\n${(e.details as { stack?: string })?.stack ?? ""}`);
        fail(new NimbusError("NIMBUS_FUNCTION_ERROR", undefined, { details: { invocationId } }));
      } else fail(e);
    }
  }
}
