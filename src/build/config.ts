/**
 * Function configuration: the inline `export const config` and `nimbus.json` entries,
 * validated into one normalised shape. Every error names the field and what is allowed.
 */
import { EVENT_CONFIG_KEYS, type EventConfig, validateEventConfig } from "../events/config.ts";
import { NimbusError } from "../errors.ts";
import type { ExecutorKind } from "../executors/types.ts";

/**
 * Where a function's `fetch` may connect (isolate executor; the host checks every address
 * a name resolves to at connect time).
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
  /** Invocations one instance serves at once. @default 1 */
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
  /** CPU time per invocation, ms (isolate executor). @default undefined (no CPU limit beyond the timeout) */
  cpuMs?: number;
  /** Outbound network policy (isolate executor). @default the server's policy */
  network?: NetworkPolicy;
}

/** The defaults applied to fields not given. */
export const DEFAULT_CONFIG: FunctionConfig = {
  memory: 128,
  timeoutMs: 30_000,
  concurrency: 1,
  minInstances: 0,
  maxInstances: 10,
  idleTimeoutMs: 300_000,
  maxQueue: 1000,
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
  "cpuMs",
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
 * Validates and normalises a raw config object (inline `config` merged over `nimbus.json`).
 * Throws NIMBUS_BAD_CONFIG naming the first invalid field.
 */
export function validateConfig(raw: unknown): FunctionConfig {
  if (raw === undefined || raw === null) return { ...DEFAULT_CONFIG, env: {} };
  if (typeof raw !== "object" || Array.isArray(raw)) throw bad("(root)", "must be an object.");
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!(KNOWN as readonly string[]).includes(key)) {
      throw bad(key, `unknown field. Known fields: ${KNOWN.join(", ")}.`);
    }
  }
  const c: FunctionConfig = { ...DEFAULT_CONFIG, env: {} };
  if (r.memory !== undefined) c.memory = int("memory", r.memory, 64, 10_240);
  if (r.timeout !== undefined) {
    c.timeoutMs = parseDuration("timeout", r.timeout);
    if (c.timeoutMs > 900_000) throw bad("timeout", "must be at most 900 seconds (15 minutes).");
  }
  if (r.concurrency !== undefined) c.concurrency = int("concurrency", r.concurrency, 1, 1000);
  if (r.minInstances !== undefined) c.minInstances = int("minInstances", r.minInstances, 0, 100);
  if (r.maxInstances !== undefined) c.maxInstances = int("maxInstances", r.maxInstances, 1, 1000);
  if (c.minInstances > c.maxInstances) {
    throw bad("minInstances", `must not exceed maxInstances (${c.maxInstances}), got ${c.minInstances}.`);
  }
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
  Object.assign(c, validateEventConfig(r));
  if (r.cpuMs !== undefined) c.cpuMs = int("cpuMs", r.cpuMs, 1, 900_000);
  if (r.network !== undefined) c.network = validateNetwork(r.network);
  if (c.network && c.executor !== "isolate") {
    throw bad(
      "network",
      'a network policy is enforced by the isolate executor only; set executor: "isolate", or remove it (process instances share the host\'s network).',
    );
  }
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
