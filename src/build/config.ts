/**
 * Function configuration: the inline `export const config` and `nimbus.json` entries,
 * validated into one normalised shape. Every error names the field and what is allowed.
 */
import { availableParallelism } from "node:os";
import { NimbusError } from "../errors.ts";
import { EVENT_CONFIG_KEYS, type EventConfig, validateEventConfig } from "../events/config.ts";
import type { ExecutorKind } from "../executors/types.ts";

/**
 * Where a function may connect (both executors: the platform's egress proxy checks every
 * address a name resolves to at connect time). It can only narrow the server's policy.
 */
export interface NetworkPolicy {
  /** `allow`: public addresses unless denied; `deny`: only what `allow` names. @default "allow" */
  default: "allow" | "deny";
  /** Host names (`api.example.com`, `*.example.com`), IP addresses or CIDR ranges allowed. */
  allow?: string[];
  /** Host names, addresses or ranges refused, even inside an `allow` rule. */
  deny?: string[];
  /** Whether loopback, private and link-local addresses may be reached without an `allow` rule. @default false */
  allowPrivate?: boolean;
}

/** A function's normalised configuration (stored in every version). */
export interface FunctionConfig extends EventConfig {
  /** Memory in MB (also sets the V8 heap limit and the cgroup limit). @default 128 */
  memory: number;
  /** Wall-clock timeout per invocation, ms. @default 30000 */
  timeoutMs: number;
  /**
   * Invocations one instance serves at once.
   * @default 1 for `executor: "process"` (as Lambda: one request per process instance);
   * {@link ISOLATE_DEFAULT_CONCURRENCY} for `executor: "isolate"` (as a Worker: an isolate
   * interleaves requests while they wait, and its CPU time is split among the requests that
   * overlapped)
   */
  concurrency: number;
  /** Instances kept warm even when idle. @default 0 */
  minInstances: number;
  /** Instances at most. @default 10 */
  maxInstances: number;
  /** Idle time after which an instance is stopped, ms. @default 300000 (5 minutes) */
  idleTimeoutMs: number;
  /** Requests that may wait for an instance before 429 (as Knative's activator buffers). @default 1000 */
  maxQueue: number;
  /**
   * Invocations of this function running at once, at most; also set aside for it from the
   * machine-wide limit so other functions cannot starve it (as Lambda's reserved concurrency).
   * @default undefined (shares the machine's unreserved concurrency)
   */
  reservedConcurrency?: number;
  /** The function's environment variables. */
  env: Record<string, string>;
  /** `public`: anyone may call the URL; `key`: an API key is required. @default "public" */
  auth: "public" | "key";
  /** Which executor runs it. @default "process" */
  executor: ExecutorKind;
  /**
   * The instance's share of the machine's cores (process executor: the cgroup CPU quota;
   * e.g. 0.5 = half a core, 2 = two cores). @default 1
   */
  cpu: number;
  /** CPU time per invocation, ms (isolate executor). @default undefined (no CPU limit beyond the timeout) */
  cpuMs?: number;
  /**
   * Isolate executor: `"isolate"` gives the function a V8 isolate of its own; `"context"` a
   * context in an isolate shared with other functions of the same tenant and memory size
   * (~0.3 MB instead of ~2 MB per warm function, but a shared heap limit and thread: one
   * function's runaway stops them all). Ignored by the process executor.
   * @default the server's `--isolation` (itself "isolate" by default)
   */
  isolation?: "isolate" | "context";
  /** Outbound network policy (both executors; narrows the server's). @default the server's policy */
  network?: NetworkPolicy;
  /**
   * Compatibility flags (isolate executor). `"nodejs"`: the Node.js subset Workers'
   * `nodejs_compat` offers (node:buffer, events, util, assert, path, string_decoder,
   * async_hooks, process and the `process`/`Buffer` globals) is bundled into the function.
   * Put it in nimbus.json (the CLI bundles before it can read an inline config).
   * @default []
   */
  compatibility?: "nodejs"[];
}

/**
 * Invocations one isolate serves at once when the config does not say: an isolate is one
 * thread that interleaves requests at their awaits, as a Cloudflare Worker does, so holding
 * requests back to one at a time would only start more isolates (memory, cold starts).
 */
export const ISOLATE_DEFAULT_CONCURRENCY = 100;

/** The defaults applied to fields not given (`concurrency` also depends on the executor). */
export const DEFAULT_CONFIG: FunctionConfig = {
  memory: 128,
  timeoutMs: 30_000,
  concurrency: 1,
  minInstances: 0,
  maxInstances: 10,
  idleTimeoutMs: 300_000,
  maxQueue: 1000,
  cpu: 1,
  env: {},
  auth: "public",
  executor: "process",
};

const KNOWN = [
  "memory",
  "timeout",
  "concurrency",
  "minInstances",
  "maxInstances",
  "idleTimeout",
  "maxQueue",
  "env",
  "auth",
  "executor",
  "cpu",
  "compatibility",
  "cpuMs",
  "isolation",
  "reservedConcurrency",
  "network",
  ...EVENT_CONFIG_KEYS,
] as const;

function bad(field: string, message: string): NimbusError {
  return new NimbusError("NIMBUS_BAD_CONFIG", `config.${field}: ${message}`, { details: { field } });
}

/**
 * Parses a duration: a number of seconds (as Lambda's `timeout`), or a string with a unit
 * (`"500ms"`, `"10s"`, `"5m"`, `"1h"`).
 */
export function parseDuration(field: string, value: unknown): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value <= 0)
      throw bad(field, `must be a positive number of seconds, got ${value}.`);
    return Math.round(value * 1000);
  }
  if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(value);
    if (m) {
      const n = Number(m[1]);
      const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
      if (n > 0) return Math.round(n * unit);
    }
  }
  throw bad(
    field,
    `must be seconds (a number) or a string like "500ms", "10s", "5m"; got ${JSON.stringify(value)}.`,
  );
}

function int(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw bad(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}.`);
  }
  return value;
}

/**
 * The server's maximums for what a function may ask for (`nimbus serve --max-*` flags, or
 * their `NIMBUS_MAX_*` variables): without them a tenant could keep instances warm forever
 * (`idleTimeout: "1000h"`) or hold a hundred of them (`minInstances: 100`) for free.
 */
export interface ServerLimits {
  /** Longest `idleTimeout`, ms (Lambda keeps an idle execution environment for minutes). @default 900000 (15 minutes) */
  maxIdleTimeoutMs: number;
  /** Largest `minInstances` (instances kept warm without requests). @default 10 */
  maxMinInstances: number;
  /** Largest `maxInstances`. @default 100 */
  maxMaxInstances: number;
  /** Largest `memory`, MB. @default 4096 */
  maxMemoryMB: number;
  /** Longest `timeout`, ms. @default 900000 (15 minutes, as Lambda) */
  maxTimeoutMs: number;
  /** Largest `cpu` (cores one instance may use). @default the machine's cores */
  maxCpu: number;
}

/** The default maximums. */
export const DEFAULT_LIMITS: ServerLimits = {
  maxIdleTimeoutMs: 900_000,
  maxMinInstances: 10,
  maxMaxInstances: 100,
  maxMemoryMB: 4096,
  maxTimeoutMs: 900_000,
  maxCpu: availableParallelism(),
};

/** Each limit's `nimbus serve` flag and environment variable (named in refusals). */
export const LIMIT_FLAGS: Record<keyof ServerLimits, { flag: string; env: string }> = {
  maxIdleTimeoutMs: { flag: "--max-idle-timeout", env: "NIMBUS_MAX_IDLE_TIMEOUT" },
  maxMinInstances: { flag: "--max-min-instances", env: "NIMBUS_MAX_MIN_INSTANCES" },
  maxMaxInstances: { flag: "--max-max-instances", env: "NIMBUS_MAX_MAX_INSTANCES" },
  maxMemoryMB: { flag: "--max-memory", env: "NIMBUS_MAX_MEMORY" },
  maxTimeoutMs: { flag: "--max-timeout", env: "NIMBUS_MAX_TIMEOUT" },
  maxCpu: { flag: "--max-cpu", env: "NIMBUS_MAX_CPU" },
};

/** Formats ms the way a config says it (`15m`, `30s`, `500ms`). */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function overLimit(field: string, asked: string, limit: keyof ServerLimits, max: string): NimbusError {
  const { flag, env } = LIMIT_FLAGS[limit];
  return new NimbusError(
    "NIMBUS_CONFIG_OVER_LIMIT",
    `config.${field}: ${asked} is over this server's maximum of ${max}. Ask for at most ${max}, or have the operator raise it (nimbus serve ${flag}, or ${env}).`,
    { details: { field, maximum: max, flag, env } },
  );
}

/**
 * Refuses a config that asks for more than the server allows (NIMBUS_CONFIG_OVER_LIMIT
 * naming the maximum and the flag that sets it).
 */
export function checkLimits(c: FunctionConfig, limits: ServerLimits): void {
  if (c.idleTimeoutMs > limits.maxIdleTimeoutMs) {
    throw overLimit(
      "idleTimeout",
      formatDuration(c.idleTimeoutMs),
      "maxIdleTimeoutMs",
      formatDuration(limits.maxIdleTimeoutMs),
    );
  }
  if (c.timeoutMs > limits.maxTimeoutMs) {
    throw overLimit(
      "timeout",
      formatDuration(c.timeoutMs),
      "maxTimeoutMs",
      formatDuration(limits.maxTimeoutMs),
    );
  }
  if (c.minInstances > limits.maxMinInstances) {
    throw overLimit(
      "minInstances",
      String(c.minInstances),
      "maxMinInstances",
      String(limits.maxMinInstances),
    );
  }
  if (c.maxInstances > limits.maxMaxInstances) {
    throw overLimit(
      "maxInstances",
      String(c.maxInstances),
      "maxMaxInstances",
      String(limits.maxMaxInstances),
    );
  }
  if (c.memory > limits.maxMemoryMB) {
    throw overLimit("memory", `${c.memory} MB`, "maxMemoryMB", `${limits.maxMemoryMB} MB`);
  }
  if (c.cpu > limits.maxCpu) {
    throw overLimit("cpu", `${c.cpu} cores`, "maxCpu", `${limits.maxCpu} cores`);
  }
}

/**
 * A stored config held to the server's maximums (versions deployed before the operator
 * lowered one keep running, within the new maximums).
 */
export function clampToLimits(c: FunctionConfig, limits: ServerLimits): FunctionConfig {
  if (
    c.idleTimeoutMs <= limits.maxIdleTimeoutMs &&
    c.timeoutMs <= limits.maxTimeoutMs &&
    c.maxInstances <= limits.maxMaxInstances &&
    c.minInstances <= limits.maxMinInstances &&
    c.memory <= limits.maxMemoryMB &&
    c.cpu !== undefined &&
    c.cpu <= limits.maxCpu
  )
    return c;
  const maxInstances = Math.min(c.maxInstances, limits.maxMaxInstances);
  return {
    ...c,
    idleTimeoutMs: Math.min(c.idleTimeoutMs, limits.maxIdleTimeoutMs),
    timeoutMs: Math.min(c.timeoutMs, limits.maxTimeoutMs),
    maxInstances,
    minInstances: Math.min(c.minInstances, limits.maxMinInstances, maxInstances),
    memory: Math.min(c.memory, limits.maxMemoryMB),
    cpu: Math.min(c.cpu ?? DEFAULT_CONFIG.cpu, limits.maxCpu),
  };
}

/**
 * Validates and normalises a raw config object (inline `config` merged over `nimbus.json`).
 * Throws NIMBUS_BAD_CONFIG naming the first invalid field, or NIMBUS_CONFIG_OVER_LIMIT when
 * it asks for more than `limits` allow.
 */
export function validateConfig(raw: unknown, limits: ServerLimits = DEFAULT_LIMITS): FunctionConfig {
  const c = validateShape(raw);
  // Over a limit first: it names what the server allows.
  checkLimits(c, limits);
  if (c.minInstances > c.maxInstances) {
    throw bad("minInstances", `must not exceed maxInstances (${c.maxInstances}), got ${c.minInstances}.`);
  }
  return c;
}

function validateShape(raw: unknown): FunctionConfig {
  if (raw === undefined || raw === null) return { ...DEFAULT_CONFIG, env: {} };
  if (typeof raw !== "object" || Array.isArray(raw)) throw bad("(root)", "must be an object.");
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      throw bad(key, `unknown field. Known fields: ${KNOWN.join(", ")}.`);
    }
  }
  const c: FunctionConfig = { ...DEFAULT_CONFIG, env: {} };
  if (r.memory !== undefined) c.memory = int("memory", r.memory, 64, 1_048_576);
  // Upper bounds of memory, timeout, idleTimeout and instance counts are the server's
  // (checkLimits), so an operator can raise them.
  if (r.timeout !== undefined) c.timeoutMs = parseDuration("timeout", r.timeout);
  if (r.concurrency !== undefined) c.concurrency = int("concurrency", r.concurrency, 1, 1000);
  if (r.minInstances !== undefined) c.minInstances = int("minInstances", r.minInstances, 0, 100_000);
  if (r.maxInstances !== undefined) c.maxInstances = int("maxInstances", r.maxInstances, 1, 100_000);
  if (r.idleTimeout !== undefined) c.idleTimeoutMs = parseDuration("idleTimeout", r.idleTimeout);
  if (r.maxQueue !== undefined) c.maxQueue = int("maxQueue", r.maxQueue, 0, 100_000);
  if (r.env !== undefined) {
    if (typeof r.env !== "object" || r.env === null || Array.isArray(r.env)) {
      throw bad("env", "must be an object of string values.");
    }
    for (const [k, v] of Object.entries(r.env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        throw bad(`env.${k}`, "names must match ^[A-Za-z_][A-Za-z0-9_]*$.");
      if (typeof v !== "string") throw bad(`env.${k}`, `must be a string, got ${typeof v}.`);
      c.env[k] = v;
    }
  }
  if (r.auth !== undefined) {
    if (r.auth !== "public" && r.auth !== "key")
      throw bad("auth", `must be "public" or "key", got ${JSON.stringify(r.auth)}.`);
    c.auth = r.auth;
  }
  if (r.executor !== undefined) {
    if (r.executor !== "process" && r.executor !== "isolate") {
      throw bad("executor", `must be "process" or "isolate", got ${JSON.stringify(r.executor)}.`);
    }
    c.executor = r.executor;
  }
  if (r.cpu !== undefined) {
    if (typeof r.cpu !== "number" || !Number.isFinite(r.cpu) || r.cpu < 0.05 || r.cpu > 1024) {
      throw bad(
        "cpu",
        `must be a number of cores from 0.05 to 1024 (e.g. 0.5, 1, 2), got ${JSON.stringify(r.cpu)}.`,
      );
    }
    c.cpu = Math.round(r.cpu * 100) / 100;
  }
  if (r.concurrency === undefined && c.executor === "isolate") c.concurrency = ISOLATE_DEFAULT_CONCURRENCY;
  if (r.compatibility !== undefined) {
    if (!Array.isArray(r.compatibility) || r.compatibility.some((f) => f !== "nodejs")) {
      throw bad(
        "compatibility",
        `must be a list of compatibility flags; the only flag is "nodejs", got ${JSON.stringify(r.compatibility)}.`,
      );
    }
    if (r.compatibility.length > 0) c.compatibility = ["nodejs"];
  }
  Object.assign(c, validateEventConfig(r));
  if (r.cpuMs !== undefined) c.cpuMs = int("cpuMs", r.cpuMs, 1, 900_000);
  if (r.isolation !== undefined) {
    if (r.isolation !== "isolate" && r.isolation !== "context") {
      throw bad(
        "isolation",
        `must be "isolate" (an isolate of its own) or "context" (a context in an isolate shared with the tenant's other functions), got ${JSON.stringify(r.isolation)}.`,
      );
    }
    c.isolation = r.isolation;
  }
  if (r.network !== undefined) c.network = validateNetwork(r.network);
  if (r.reservedConcurrency !== undefined) {
    c.reservedConcurrency = int("reservedConcurrency", r.reservedConcurrency, 0, 100_000);
  }
  return c;
}

function validateNetwork(raw: unknown): NetworkPolicy {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw bad("network", 'must be an object like { "default": "deny", "allow": ["api.example.com"] }.');
  }
  const n = raw as Record<string, unknown>;
  for (const key of Object.keys(n)) {
    if (!["default", "allow", "deny", "allowPrivate"].includes(key)) {
      throw bad(`network.${key}`, "unknown field. Known fields: default, allow, deny, allowPrivate.");
    }
  }
  const policy: NetworkPolicy = { default: "allow" };
  if (n.default !== undefined) {
    if (n.default !== "allow" && n.default !== "deny") {
      throw bad("network.default", `must be "allow" or "deny", got ${JSON.stringify(n.default)}.`);
    }
    policy.default = n.default;
  }
  for (const list of ["allow", "deny"] as const) {
    const v = n[list];
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string" || x.length === 0 || x.length > 253)) {
      throw bad(
        `network.${list}`,
        'must be a list of host names, addresses or CIDR ranges (e.g. ["*.example.com", "10.0.0.0/8"]).',
      );
    }
    policy[list] = v as string[];
  }
  if (n.allowPrivate !== undefined) {
    if (typeof n.allowPrivate !== "boolean") throw bad("network.allowPrivate", "must be true or false.");
    policy.allowPrivate = n.allowPrivate;
  }
  return policy;
}

/** DNS-label rule for function names. */
export const FUNCTION_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Throws NIMBUS_BAD_FUNCTION_NAME unless `name` is valid. */
export function checkFunctionName(name: string): void {
  if (!FUNCTION_NAME.test(name)) {
    throw new NimbusError(
      "NIMBUS_BAD_FUNCTION_NAME",
      `Invalid function name ${JSON.stringify(name)}: names must match ^[a-z][a-z0-9-]{0,62}$ (lowercase letter first, then lowercase letters, digits, dashes).`,
    );
  }
}
