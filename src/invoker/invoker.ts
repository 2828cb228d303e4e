/**
 * The invocation pipeline: resolve the version, lease an instance from the scheduler, run
 * the invocation under its deadline, stream the response to the responder, and record
 * metering and logs.
 */
import { randomUUID } from "node:crypto";
import { clampToLimits, DEFAULT_LIMITS, type ServerLimits } from "../build/config.ts";
import { NimbusError } from "../errors.ts";
import type { Tracer } from "../observability/tracing.ts";
import type { Scheduler, VersionPool } from "../scheduler/pool.ts";
import type { VersionRecord } from "../store/types.ts";
import { Deadlines } from "./deadlines.ts";
import { Invocation } from "./invocation.ts";
import { LogQuota } from "./log-quota.ts";
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

export { H } from "./invocation.ts";

/** The invoker. */
export class Invoker {
  private readonly registry: Registry;
  private readonly scheduler: Scheduler;
  /** Where invocation records and log lines go. */
  readonly recorder: Recorder;
  /** The running invocations' deadlines (one timer per timeout value, not per request). */
  readonly deadlines = new Deadlines();
  private draining = false;
  private active = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly limits: ServerLimits;

  /** The log quotas every invocation's lines pass through. */
  readonly logQuota: LogQuota;
  /** Traces invocations when set (`--otlp-endpoint`). */
  tracer: Tracer | undefined;

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
        queues: Object.keys(config.queues?.producers ?? {}),
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
  invoke(req: InvokeRequest, v: VersionRecord, responder: Responder): Promise<void> {
    if (this.draining) {
      responder.error(
        new NimbusError("NIMBUS_UNAVAILABLE", "The server is shutting down; retry shortly."),
        false,
      );
      return Promise.resolve();
    }
    this.active++;
    return new Invocation(this, req, v, responder, uuidv7()).run();
  }

  /** Called by an {@link Invocation} once it is recorded. */
  ended(): void {
    this.active--;
    if (this.active === 0 && this.draining) for (const w of this.idleWaiters.splice(0)) w();
  }
}
