/**
 * The invocation pipeline: resolve the version, lease an instance from the scheduler, run
 * the invocation under its deadline, stream the response to the responder, and record
 * metering and logs.
 */
import { randomUUID } from "node:crypto";
import { NimbusError } from "../errors.ts";
import type { ResponseSink } from "../executors/types.ts";
import type { InvokeMeta, LogMeta } from "../runtime/protocol.ts";
import type { Scheduler, VersionPool } from "../scheduler/pool.ts";
import type { VersionRecord } from "../store/types.ts";
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
  event?: { id: string; attempt: number; enqueuedAt: number; kind?: "event" | "scheduled" };
}

/** Where the response goes (an HTTP response, or a buffer for `nimbus invoke`). */
export interface Responder {
  head(status: number, headers: [string, string][]): void;
  chunk(data: Buffer): void;
  end(): void;
  /** The invocation failed; `headersSent` tells whether head() was already called. */
  error(err: NimbusError, headersSent: boolean): void;
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

  constructor(registry: Registry, scheduler: Scheduler, recorder: Recorder) {
    this.registry = registry;
    this.scheduler = scheduler;
    this.recorder = recorder;
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
    return this.scheduler.pool(
      {
        functionName: v.name,
        tenant: v.tenant,
        version: v.version,
        codeDir: v.codeDir,
        memoryMB: v.config.memory,
        timeoutMs: v.config.timeoutMs,
        env: v.config.env,
        cpuMs: v.config.cpuMs,
        network: v.config.network,
      },
      v.config,
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
    let timer: NodeJS.Timeout | undefined;
    let pool: VersionPool | undefined;
    let leased = false;

    const log = (line: LogMeta): void => {
      this.recorder.log({
        tenant: v.tenant,
        fn: v.name,
        version: v.version,
        invocationId,
        t: line.t,
        level: line.level,
        msg: line.msg,
      });
    };
    const finish = (): void => {
      if (recorded) return;
      recorded = true;
      if (timer) clearTimeout(timer);
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
        memoryMB: v.config.memory,
        gbSeconds: (v.config.memory / 1024) * (billedMs / 1000),
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
      if (leased) pool?.release();
      this.active--;
      if (this.active === 0 && this.draining) for (const w of this.idleWaiters.splice(0)) w();
    };
    const fail = (err: NimbusError, measuredCpu?: number): void => {
      if (recorded) return;
      if (measuredCpu !== undefined) cpuMs = measuredCpu;
      errorCode = err.code;
      status = headersSent ? status : err.status;
      responder.error(err, headersSent);
      finish();
    };

    try {
      pool = this.poolFor(v);
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
        deadline: Date.now() + v.config.timeoutMs,
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
        chunk: (data) => {
          if (!recorded) responder.chunk(data);
        },
        end: (measuredCpu) => {
          if (recorded) return;
          cpuMs = measuredCpu;
          responder.end();
          finish();
        },
        fail: (err, measuredCpu) => {
          // The function's own failures were logged (with the source-mapped stack) by the
          // runtime; the caller sees only the generic message and the invocation id.
          const own = err.code === "NIMBUS_FUNCTION_ERROR" || err.code === "NIMBUS_BAD_RESPONSE";
          if (!own) log({ level: "error", t: Date.now(), msg: `${err.code}: ${err.message}` });
          fail(
            new NimbusError(err.code, own ? undefined : err.message, { details: { invocationId } }),
            measuredCpu,
          );
        },
        log,
        done: () => {},
      };
      timer = setTimeout(() => {
        instance.kill(
          new NimbusError(
            "NIMBUS_TIMEOUT",
            `The function did not respond within its timeout of ${v.config.timeoutMs} ms; its instance was stopped. Raise 'timeout' in its config.`,
          ),
          sink,
        );
      }, v.config.timeoutMs);
      instance.invoke(meta, req.body, sink);
    } catch (err) {
      const e =
        err instanceof NimbusError ? err : new NimbusError("NIMBUS_INTERNAL", undefined, { cause: err });
      if (e.code === "NIMBUS_FUNCTION_ERROR") {
        // The new instance failed to load the module (it threw at import).
        log({
          level: "error",
          t: Date.now(),
          msg: `${e.message}\n${(e.details as { stack?: string })?.stack ?? ""}`,
        });
        fail(new NimbusError("NIMBUS_FUNCTION_ERROR", undefined, { details: { invocationId } }));
      } else fail(e);
    }
  }
}
