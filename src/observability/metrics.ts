/**
 * Prometheus metrics of the platform (served at `GET /metrics`): one prom-client registry and
 * typed instruments, fed where the platform already produces a record (the recorder's
 * batches of invocation records, the scheduler's instance starts and exits) so the
 * invocation hot path pays nothing extra; gauges are read at scrape time.
 *
 * Label cardinality is bounded so that no caller can create series:
 * - `function`: a deployed function (records exist only for resolved versions), at most
 *   {@link MetricsOptions.maxFunctions} names; further ones are counted as `_other`;
 * - `version`: the newest {@link MetricsOptions.maxVersions} versions seen per function;
 *   older ones are counted as `old`;
 * - `trigger`: one of {@link TRIGGERS}, else `other`;
 * - `status`: the HTTP status class (`2xx`…`5xx`), or `error` when none was sent;
 * - `code`, `reason`: codes of the error catalogue only (`src/errors.ts`), else `other`;
 * - `phase`, `state`, `queue_kind`: fixed sets.
 * Nothing taken from a request path, header or body ever becomes a label value.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { ERROR_CATALOGUE } from "../errors.ts";
import type { InvocationRecord } from "../store/types.ts";

/** Trigger label values; anything else is `other`. */
export const TRIGGERS: ReadonlySet<string> = new Set([
  "http",
  "async",
  "cron",
  "mqtt",
  "nats",
  "queue",
  "invoke",
  "event",
]);

/** Phases of a cold start measured by the executors. */
export type ColdStartPhase = "sandbox" | "load" | "total";

/** Instance states reported as a gauge. */
export type GaugeState = "starting" | "idle" | "busy" | "queued";

/** Buckets (seconds) of the invocation duration and first-byte histograms. */
export const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
/** Buckets (seconds) of the cold-start phase histogram. */
export const COLD_START_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Distinct function names given their own series. @default 1000 */
  maxFunctions?: number;
  /** Newest versions per function given their own series. @default 5 */
  maxVersions?: number;
  /** Also export prom-client's default process metrics (CPU, heap, GC…). @default true */
  defaultMetrics?: boolean;
}

/** Read at scrape time: instances by state per function. */
export interface InstanceSnapshot {
  fn: string;
  version: number;
  starting: number;
  idle: number;
  busy: number;
  queued: number;
}

/** Read at scrape time: one queue's depth and the age of its oldest deliverable message. */
export interface QueueSnapshot {
  /** `async`: a function's event queue (async calls, schedules and trigger batches); `queue`: a named queue. */
  kind: "async" | "queue";
  /** The function (or named queue) it belongs to. */
  fn: string;
  ready: number;
  delayed: number;
  leased: number;
  dead: number;
  /** Seconds the oldest ready message has waited (0 when none). */
  oldestAgeSeconds: number;
}

/** Sources read when Prometheus scrapes. */
export interface ScrapeSources {
  instances?: () => InstanceSnapshot[];
  queues?: () => Promise<QueueSnapshot[]>;
  /** Process ids of isolate hosts and instances (their RSS is read from /proc). */
  pids?: () => { kind: "isolate_host" | "instance"; pid: number }[];
  /** Log lines dropped by the quotas, since start (a monotonic count). */
  logLinesDropped?: () => number;
  /** Connections refused at the connection cap, since start (a monotonic count). */
  refusedConnections?: () => number;
}

const CODES: ReadonlySet<string> = new Set(Object.keys(ERROR_CATALOGUE));

/** A catalogued code, or `other`. */
export function codeLabel(code: string | null | undefined): string {
  return code && CODES.has(code) ? code : "other";
}

/** The status class label. */
export function statusLabel(status: number): string {
  return status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : "error";
}

/** The platform's metrics. */
export class Metrics {
  /** The prom-client registry holding every Nimbus metric. */
  readonly registry = new Registry();
  readonly invocations: Counter<"function" | "version" | "trigger" | "status">;
  readonly errors: Counter<"function" | "code">;
  readonly duration: Histogram<"function" | "trigger">;
  readonly firstByte: Histogram<"function" | "trigger">;
  readonly billedMs: Counter<"function">;
  readonly gbSeconds: Counter<"function">;
  readonly cpuMs: Counter<"function">;
  readonly coldStarts: Counter<"function" | "version">;
  readonly coldStartDuration: Histogram<"executor" | "phase">;
  readonly queueWait: Histogram<"function">;
  readonly refusals: Counter<"code">;
  readonly kills: Counter<"reason">;
  readonly instances: Gauge<"function" | "state">;
  readonly queueDepth: Gauge<"kind" | "function" | "state">;
  readonly queueAge: Gauge<"kind" | "function">;
  readonly logLinesDropped: Counter;
  readonly rss: Gauge<"kind">;
  readonly eventLoopLag: Gauge<"quantile">;
  readonly spansDropped: Counter;

  private readonly maxFunctions: number;
  private readonly maxVersions: number;
  private readonly fnNames = new Set<string>();
  private readonly versions = new Map<string, number[]>();
  private sources: ScrapeSources = {};
  private readonly loop: ReturnType<typeof monitorEventLoopDelay>;
  private droppedSeen = 0;
  private refusedSeen = 0;

  constructor(opts: MetricsOptions = {}) {
    this.maxFunctions = opts.maxFunctions ?? 1000;
    this.maxVersions = opts.maxVersions ?? 5;
    const registers = [this.registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: "nimbus_" });
    this.invocations = new Counter({
      name: "nimbus_invocations_total",
      help: "Invocations that ended, by function, version, trigger and HTTP status class.",
      labelNames: ["function", "version", "trigger", "status"],
      registers,
    });
    this.errors = new Counter({
      name: "nimbus_invocation_errors_total",
      help: "Invocations that ended with a catalogued error code (throttles included).",
      labelNames: ["function", "code"],
      registers,
    });
    this.duration = new Histogram({
      name: "nimbus_invocation_duration_seconds",
      help: "Invocation duration (response and waitUntil work), seconds.",
      labelNames: ["function", "trigger"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.firstByte = new Histogram({
      name: "nimbus_invocation_first_byte_seconds",
      help: "Time from the start of an invocation to its response head, seconds.",
      labelNames: ["function", "trigger"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.billedMs = new Counter({
      name: "nimbus_billed_milliseconds_total",
      help: "Billed milliseconds.",
      labelNames: ["function"],
      registers,
    });
    this.gbSeconds = new Counter({
      name: "nimbus_gb_seconds_total",
      help: "Billed GB-seconds (memory GB × billed seconds).",
      labelNames: ["function"],
      registers,
    });
    this.cpuMs = new Counter({
      name: "nimbus_cpu_milliseconds_total",
      help: "CPU milliseconds used by invocations.",
      labelNames: ["function"],
      registers,
    });
    this.coldStarts = new Counter({
      name: "nimbus_cold_starts_total",
      help: "Invocations that waited for a new instance to start.",
      labelNames: ["function", "version"],
      registers,
    });
    this.coldStartDuration = new Histogram({
      name: "nimbus_cold_start_duration_seconds",
      help: "Instance start duration by phase: sandbox (a runtime or isolate made ready), load (the function's module loaded), total.",
      labelNames: ["executor", "phase"],
      buckets: COLD_START_BUCKETS,
      registers,
    });
    this.queueWait = new Histogram({
      name: "nimbus_queue_wait_seconds",
      help: "Time an async event waited in its queue before the attempt started, seconds.",
      labelNames: ["function"],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600],
      registers,
    });
    this.refusals = new Counter({
      name: "nimbus_refusals_total",
      help: "Requests refused before or instead of an invocation (throttles, limits, auth), by catalogued code.",
      labelNames: ["code"],
      registers,
    });
    this.kills = new Counter({
      name: "nimbus_sandbox_kills_total",
      help: "Instances stopped by the platform, by reason (catalogued code).",
      labelNames: ["reason"],
      registers,
    });
    this.logLinesDropped = new Counter({
      name: "nimbus_log_lines_dropped_total",
      help: "Function log lines dropped by the log quotas.",
      registers,
    });
    this.spansDropped = new Counter({
      name: "nimbus_trace_spans_dropped_total",
      help: "Trace spans dropped because the export queue was full or the exporter failed.",
      registers,
    });
    this.instances = new Gauge({
      name: "nimbus_instances",
      help: "Instances by state (queued: requests waiting for one).",
      labelNames: ["function", "state"],
      registers,
      collect: () => this.collectInstances(),
    });
    this.queueDepth = new Gauge({
      name: "nimbus_queue_depth",
      help: "Messages in async event queues, named queues and trigger queues, by state.",
      labelNames: ["kind", "function", "state"],
      registers,
    });
    this.queueAge = new Gauge({
      name: "nimbus_queue_oldest_age_seconds",
      help: "Age of the oldest ready message per queue, seconds.",
      labelNames: ["kind", "function"],
      registers,
    });
    this.rss = new Gauge({
      name: "nimbus_rss_bytes",
      help: "Resident memory: the platform process, isolate host processes and instance processes (summed per kind).",
      labelNames: ["kind"],
      registers,
      collect: () => this.collectRss(),
    });
    this.loop = monitorEventLoopDelay({ resolution: 10 });
    this.loop.enable();
    this.eventLoopLag = new Gauge({
      name: "nimbus_event_loop_lag_seconds",
      help: "Event-loop delay of the platform process over the last scrape interval.",
      labelNames: ["quantile"],
      registers,
      collect: () => {
        this.eventLoopLag.set({ quantile: "0.5" }, this.loop.percentile(50) / 1e9);
        this.eventLoopLag.set({ quantile: "0.99" }, this.loop.percentile(99) / 1e9);
        this.eventLoopLag.set({ quantile: "1" }, this.loop.max / 1e9);
        this.loop.reset();
      },
    });
  }

  /** Registers what is read at scrape time. */
  setSources(sources: ScrapeSources): void {
    this.sources = { ...this.sources, ...sources };
  }

  /** The function label: deployed names, up to the cap. */
  fnLabel(fn: string): string {
    if (this.fnNames.has(fn)) return fn;
    if (this.fnNames.size >= this.maxFunctions) return "_other";
    this.fnNames.add(fn);
    return fn;
  }

  /**
   * The version label: each function keeps its own series for its newest `maxVersions`
   * versions seen; a newer version evicts the oldest one's series, and older versions count
   * as `old`. So a function never holds more than `maxVersions + 1` version values.
   */
  versionLabel(fn: string, version: number): string {
    let list = this.versions.get(fn);
    if (!list) {
      list = [];
      this.versions.set(fn, list);
    }
    if (list.includes(version)) return String(version);
    if (list.length >= this.maxVersions) {
      if (version < list[0]!) return "old";
      this.dropVersion(fn, list.shift()!);
    }
    list.push(version);
    list.sort((a, b) => a - b);
    return String(version);
  }

  /** Removes the series of a version that left the window (its later counts go to `old`). */
  private dropVersion(fnLabel: string, version: number): void {
    const v = String(version);
    const fn = this.fnLabel(fnLabel);
    for (const trigger of [...TRIGGERS, "other"]) {
      for (const status of ["1xx", "2xx", "3xx", "4xx", "5xx", "error"]) {
        this.invocations.remove({ function: fn, version: v, trigger, status });
      }
    }
    this.coldStarts.remove({ function: fn, version: v });
  }

  /** Derives the per-invocation metrics from a batch of records (called off the hot path). */
  observeInvocations(records: readonly InvocationRecord[]): void {
    for (const r of records) this.observeInvocation(r);
  }

  /** Derives the per-invocation metrics from one record. */
  observeInvocation(r: InvocationRecord): void {
    const fn = this.fnLabel(r.fn);
    const trigger = TRIGGERS.has(r.trigger) ? r.trigger : "other";
    const version = this.versionLabel(r.fn, r.version);
    this.invocations.inc({ function: fn, version, trigger, status: statusLabel(r.status) });
    if (r.errorCode) {
      const code = codeLabel(r.errorCode);
      this.errors.inc({ function: fn, code });
      // A request refused before it ran (throttled, shutting down) billed nothing.
      if (r.billedMs === 0) this.refusals.inc({ code });
    }
    const by = { function: fn, trigger };
    this.duration.observe(by, r.durationMs / 1000);
    if (r.firstByteMs !== null && r.firstByteMs !== undefined)
      this.firstByte.observe(by, r.firstByteMs / 1000);
    if (r.billedMs > 0) {
      const f = { function: fn };
      this.billedMs.inc(f, r.billedMs);
      this.gbSeconds.inc(f, r.gbSeconds);
      if (r.cpuMs > 0) this.cpuMs.inc(f, r.cpuMs);
    }
    if (r.coldStart) this.coldStarts.inc({ function: fn, version });
    if (r.queueWaitMs !== null && r.queueWaitMs !== undefined) {
      this.queueWait.observe({ function: fn }, r.queueWaitMs / 1000);
    }
  }

  /** One instance start, with what each phase took (ms). */
  observeColdStart(executor: string, phases: Partial<Record<ColdStartPhase, number>>): void {
    const ex = executor === "isolate" ? "isolate" : "process";
    for (const [phase, ms] of Object.entries(phases)) {
      if (typeof ms === "number" && Number.isFinite(ms) && ms >= 0) {
        this.coldStartDuration.observe({ executor: ex, phase }, ms / 1000);
      }
    }
  }

  /** A request refused with a catalogued code (not an invocation record). */
  refused(code: string): void {
    this.refusals.inc({ code: codeLabel(code) });
  }

  /** The platform stopped an instance for `reason` (a catalogued code). */
  killed(reason: string): void {
    this.kills.inc({ reason: codeLabel(reason) });
  }

  /** The Prometheus text exposition (reads the scrape-time sources first). */
  async render(): Promise<string> {
    await this.collectQueues();
    this.collectDropped();
    return this.registry.metrics();
  }

  /** The exposition's content type. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Stops the event-loop monitor. */
  close(): void {
    this.loop.disable();
  }

  private collectInstances(): void {
    this.instances.reset();
    const snap = this.sources.instances?.() ?? [];
    const sums = new Map<string, Record<GaugeState, number>>();
    for (const s of snap) {
      const fn = this.fnLabel(s.fn);
      const acc = sums.get(fn) ?? { starting: 0, idle: 0, busy: 0, queued: 0 };
      acc.starting += s.starting;
      acc.idle += s.idle;
      acc.busy += s.busy;
      acc.queued += s.queued;
      sums.set(fn, acc);
    }
    for (const [fn, acc] of sums) {
      for (const state of ["starting", "idle", "busy", "queued"] as const) {
        this.instances.set({ function: fn, state }, acc[state]);
      }
    }
  }

  private async collectQueues(): Promise<void> {
    if (!this.sources.queues) return;
    const snap = await this.sources.queues();
    this.queueDepth.reset();
    this.queueAge.reset();
    // Series merged into `_other` keep the oldest age.
    const ages = new Map<string, { kind: QueueSnapshot["kind"]; fn: string; age: number }>();
    for (const q of snap) {
      const fn = this.fnLabel(q.fn);
      for (const state of ["ready", "delayed", "leased", "dead"] as const) {
        this.queueDepth.inc({ kind: q.kind, function: fn, state }, q[state]);
      }
      const key = `${q.kind}/${fn}`;
      const prev = ages.get(key);
      if (!prev || prev.age < q.oldestAgeSeconds)
        ages.set(key, { kind: q.kind, fn, age: q.oldestAgeSeconds });
    }
    for (const a of ages.values()) this.queueAge.set({ kind: a.kind, function: a.fn }, a.age);
  }

  /** Monotonic counts kept elsewhere become counter increments. */
  private collectDropped(): void {
    const dropped = this.sources.logLinesDropped?.() ?? 0;
    if (dropped > this.droppedSeen) {
      this.logLinesDropped.inc(dropped - this.droppedSeen);
      this.droppedSeen = dropped;
    }
    const refused = this.sources.refusedConnections?.() ?? 0;
    if (refused > this.refusedSeen) {
      this.refusals.inc({ code: "NIMBUS_OVERLOADED" }, refused - this.refusedSeen);
      this.refusedSeen = refused;
    }
  }

  private collectRss(): void {
    this.rss.reset();
    this.rss.set({ kind: "platform" }, process.memoryUsage.rss());
    const sums = { isolate_host: 0, instance: 0 };
    for (const { kind, pid } of this.sources.pids?.() ?? []) sums[kind] += rssOfTree(pid);
    this.rss.set({ kind: "isolate_host" }, sums.isolate_host);
    this.rss.set({ kind: "instance" }, sums.instance);
  }
}

const PAGE = 4096;

/** Processes one sandbox's tree is read for, at most (a scrape must stay cheap whatever an instance forks). */
const MAX_TREE = 32;

/**
 * Resident bytes of a process and its descendants (a sandbox is bwrap, then the runtime
 * under it), from /proc; bounded at {@link MAX_TREE} processes. Shared pages count once per
 * process, as RSS always does.
 */
export function rssOfTree(pid: number): number {
  let total = 0;
  const todo = [pid];
  for (let n = 0; n < MAX_TREE && todo.length > 0; n++) {
    const p = todo.shift()!;
    total += rssOf(p);
    try {
      for (const c of readFileSync(`/proc/${p}/task/${p}/children`, "utf8").split(" ")) {
        const k = Number(c);
        if (Number.isInteger(k) && k > 0) todo.push(k);
      }
    } catch {
      // Gone, or a kernel without the children file: the process itself is counted.
    }
  }
  return total;
}

/** Resident bytes of a process from /proc (0 when gone or unreadable). */
export function rssOf(pid: number): number {
  try {
    const statm = readFileSync(`/proc/${pid}/statm`, "utf8");
    const pages = Number(statm.split(" ")[1]);
    return Number.isFinite(pages) ? pages * PAGE : 0;
  } catch {
    return 0;
  }
}
