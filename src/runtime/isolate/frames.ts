/**
 * Frames of the isolate host, on top of the shared frame protocol (../protocol.ts). The
 * host reuses READY, LOAD/LOADED (id = isolate slot), INVOKE and every response frame
 * (id = invocation); these add what only a many-isolate host needs. Numbers start at 32 so
 * that the process shim's own types can grow without clashing.
 */

/** Isolate-host frame types. */
export const TI = {
  /** platform → host: the in-isolate runtime to snapshot. meta: {@link InitMeta}; payload: script source */
  INIT: 32,
  /** platform → host: dispose one isolate (stop, or kill on timeout). id: slot; meta: {reason?} */
  UNLOAD: 33,
  /** host → platform: an isolate is gone on its own (memory or CPU limit). id: slot; meta: {@link GoneMeta} */
  GONE: 34,
  /**
   * host → platform: a fetch of a running invocation ended (tracing on): its client span.
   * id: invocation; meta: {@link FetchSpanMeta}
   */
  SPAN: 35,
} as const;

/** The client span of one fetch an isolate made, as the host measured it. */
export interface FetchSpanMeta {
  /** 16 hex digits: the id the host put in the request's `traceparent`. */
  spanId: string;
  host: string;
  port: number;
  method: string;
  scheme: "http" | "https";
  /** ms since the epoch. */
  startMs: number;
  endMs: number;
  /** The response status (the last one, after redirects); 0 when none came. */
  status: number;
  /** Why the fetch failed, if it did. */
  error?: string;
  /** The host added the `traceparent` (the function had not set one). */
  propagated: boolean;
}

/** Egress rules for `fetch` from isolates. */
export interface EgressPolicy {
  /**
   * What happens to a destination no rule names: `"allow"` lets public addresses through,
   * `"deny"` refuses everything not in `allow`.
   * @default "allow"
   */
  default: "allow" | "deny";
  /** Host names (`api.example.com`, `*.example.com`), IP addresses or CIDR ranges always allowed. */
  allow?: string[];
  /** Host names, IP addresses or CIDR ranges always refused, even inside an `allow` rule. */
  deny?: string[];
  /**
   * Whether loopback, private (RFC 1918/4193), link-local (incl. cloud metadata
   * 169.254.169.254) and other non-public addresses may be reached without an `allow` rule.
   * @default false
   */
  allowPrivate?: boolean;
}

/** What the host needs once, before READY. */
export interface InitMeta {
  egress: EgressPolicy;
  /** Pre-created blank isolates kept per memory size. */
  spares: number;
  /** The server's default isolation, whose spares are kept from the start. @default "isolate" */
  isolation?: Isolation;
  /** Functions one shared isolate holds at most (isolation "context"). @default 32 */
  contextsPerIsolate?: number;
}

/**
 * How a function's code is isolated from the tenant's other functions in the isolate host:
 * `"isolate"`, a V8 isolate of its own (own heap limit, own thread, stopped alone);
 * `"context"`, a V8 context in an isolate shared with up to `contextsPerIsolate` functions of
 * the same tenant and memory size (~0.3 MB instead of ~2 MB each; they share the heap limit and
 * the thread, and a limit breach stops them all). Never shared across tenants.
 */
export type Isolation = "isolate" | "context";

/** What UNLOAD carries. */
export interface UnloadMeta {
  /** The platform killed the instance (its timeout), rather than stopping an idle one. */
  kill?: boolean;
}

/** What LOAD carries for an isolate (the bundle is the payload). */
export interface IsolateLoadMeta {
  functionName: string;
  version: number;
  memoryMB: number;
  timeoutMs: number;
  /** CPU-time limit per invocation, ms. */
  cpuMs?: number;
  env: Record<string, string>;
  /** Producer binding names (`env.JOBS.send`). */
  queues?: string[];
  /** The payload's last `mapBytes` bytes are the bundle's source map (the rest is the bundle). */
  mapBytes?: number;
  /** The function's own network policy (else the host's, from INIT). */
  egress?: EgressPolicy;
  /** @default "isolate" */
  isolation?: Isolation;
}

/** Why an isolate went away. */
export interface GoneMeta {
  code: "NIMBUS_MEMORY_LIMIT" | "NIMBUS_CPU_LIMIT" | "NIMBUS_INSTANCE_CRASHED";
  message: string;
}
