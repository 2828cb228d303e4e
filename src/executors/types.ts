/**
 * The Executor seam: one interface, implemented by `process` (a sandboxed Node child per
 * instance) and `isolate` (V8 isolates). The scheduler only sees these types.
 */
import type { NetworkPolicy } from "../build/config.ts";
import type { NimbusError } from "../errors.ts";
import type { HandlerShape, InvokeMeta, LogMeta } from "../runtime/protocol.ts";

/** Executor kinds. */
export type ExecutorKind = "process" | "isolate";

/** Everything needed to start an instance of one function version. */
export interface InstanceSpec {
  functionName: string;
  tenant: string;
  version: number;
  /** Host directory holding `index.mjs` (+ `index.mjs.map`) of this version. */
  codeDir: string;
  memoryMB: number;
  timeoutMs: number;
  env: Record<string, string>;
  /** Cores the instance may use (process executor: its cgroup CPU quota). @default 1 */
  cpus?: number;
  /** CPU time per invocation, ms (executors that enforce it). */
  cpuMs?: number;
  /** Outbound network policy (executors that enforce it). */
  network?: NetworkPolicy;
  /** Producer binding names (`env.JOBS`): the only queues the instance may send to. */
  queues?: string[];
  /** Isolate executor: an isolate of its own, or a context in a shared one (config `isolation`). */
  isolation?: "isolate" | "context";
}

/** What loading a bundle reported. */
export interface LoadResult {
  ok: boolean;
  shape?: HandlerShape;
  config?: unknown;
  /** Node built-ins the bundle's compatibility modules provided (isolate executor). */
  node?: string[];
  loadMs: number;
  error?: { message: string; stack?: string };
}

/** Receives one invocation's response as it streams out of the instance. */
export interface ResponseSink {
  head(status: number, headers: [string, string][]): void;
  /**
   * A chunk of the body. Call `consumed` once the bytes have left the platform (written to
   * the caller's socket, or copied into a bounded buffer): the instance gets credit for them
   * (flow control, see FLOW_WINDOW). A sink that never calls it pauses the instance.
   */
  chunk(data: Buffer, consumed: () => void): void;
  /** The response is complete. `pending`: waitUntil work still runs (a `done` follows). */
  end(cpuMs: number, pending: boolean): void;
  /** The invocation failed; `cpuMs` when the instance could measure it. */
  fail(err: NimbusError, cpuMs?: number, stack?: string): void;
  log(line: LogMeta): void;
  /** Background work (`ctx.waitUntil`) settled. */
  done(cpuMs: number): void;
  /**
   * The function opened an outbound call (its own `fetch`, or an egress connection) while
   * this invocation ran: a client span under its handler span, when tracing is on (else
   * undefined). The executor ends it; whatever is still open when the invocation ends is
   * ended with it.
   */
  outbound?(call: OutboundCall): OutboundSpan | undefined;
}

/** An outbound call of a function, as the platform saw it. */
export interface OutboundCall {
  host: string;
  port: number;
  /** HTTP method, when the platform saw the request (isolate fetch); absent for a raw connection. */
  method?: string;
  scheme?: "http" | "https";
  /** The span id the executor already put in the request's `traceparent`. */
  spanId?: string;
  /** ms since the epoch. @default now */
  startMs?: number;
}

/** The span of an outbound call (a subset of the tracer's Span). */
export interface OutboundSpan {
  set(key: string, value: string | number | boolean): unknown;
  error(message: string): unknown;
  end(endMs?: number): void;
}

/** What an instance start took, ms: getting a sandbox (a runtime process or an isolate) ready, then loading the function's module. */
export interface StartPhases {
  sandboxMs: number;
  loadMs: number;
}

/** Instance lifecycle states. */
export type InstanceState = "starting" | "idle" | "busy" | "draining" | "dead";

/** One running sandbox of one version. */
export interface Instance {
  readonly id: string;
  readonly spec: InstanceSpec;
  /** Invocations now running on the instance. */
  inflight: number;
  /** Invocations whose response ended but whose `waitUntil` work still runs. */
  background: number;
  state: InstanceState;
  /** Last time (ms since epoch) an invocation ended on it. */
  lastUsed: number;
  /** What its start took, by phase (metrics and traces of cold starts). */
  startPhases?: StartPhases;
  /**
   * Starts one invocation; the sink receives the response. The scheduler has already
   * counted it in `inflight` (the instance decrements it when the invocation ends).
   */
  invoke(meta: InvokeMeta, body: Buffer, sink: ResponseSink): void;
  /**
   * Kills the instance; every running invocation fails with `reason` — or, when `culprit`
   * names the invocation that caused the kill, the others fail as collateral
   * (NIMBUS_INSTANCE_CRASHED).
   */
  kill(reason: NimbusError, culprit?: ResponseSink): void;
  /**
   * The caller of the invocation feeding `sink` went away: the instance stops producing its
   * response (the function's stream is cancelled) instead of streaming it into the void.
   */
  cancel(sink: ResponseSink): void;
  /** Stops gracefully (no invocation is running). */
  stop(): Promise<void>;
  /** Called once when the instance is gone, whatever the cause. */
  onExit(cb: (reason: NimbusError | undefined) => void): void;
}

/** How an instance is started. */
export interface StartOptions {
  /**
   * The version has no instance yet (a start from zero, with requests waiting): where an
   * executor queues starts, this one goes ahead of starts that add instances to versions
   * already serving, so a cold function does not wait behind other functions' scale-out.
   * @default false
   */
  first?: boolean;
}

/** An executor: starts instances, checks bundles at deploy time. */
export interface Executor {
  readonly kind: ExecutorKind;
  /** Starts an instance and loads the function into it. Throws NimbusError on load failure. */
  start(spec: InstanceSpec, options?: StartOptions): Promise<Instance>;
  /**
   * What one instance costs the machine's memory budget, MB.
   * @default the spec's `memoryMB` (a process instance may use all of it)
   */
  memoryCostMB?(spec: InstanceSpec): number;
  /** Loads a bundle in a throwaway instance to check it before activation. */
  check(spec: InstanceSpec): Promise<LoadResult>;
  /** Stops every instance and pre-started runtime. */
  close(): Promise<void>;
}
