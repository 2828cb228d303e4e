/**
 * Benchmark plumbing shared by the suites: target processes (pinned to a core), deploys over
 * the control API, single timed requests, autocannon runs with microsecond latencies, and
 * percentile arithmetic. Every wait here has a bound.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon, { type Result as CannonResult } from "autocannon";
import { bundle } from "../src/build/bundle.ts";
import type { NimbusTargetOptions, TargetInfo } from "./server.ts";

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Where results are written. */
export const RESULTS_DIR = join(ROOT, "bench/results");
/** The function every suite deploys. */
export const HELLO_FN = join(ROOT, "bench/functions/hello.ts");

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------- CPU pinning

/** Which cores the load generator and the targets run on (null: not pinned). */
export interface Pinning {
  loadgen: number | null;
  targets: number | null;
  /** Why pinning is off, when it is. */
  reason?: string;
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Pins this process (every thread: `-a`) to the last core and returns the core the targets
 * should use (core 0), as the reference figures were measured: gateway and instance
 * on one core, the load generator on the other.
 */
export function pinSelf(enabled: boolean): Pinning {
  if (!enabled) return { loadgen: null, targets: null, reason: "--no-pin" };
  const cores = availableParallelism();
  if (cores < 2) return { loadgen: null, targets: null, reason: `only ${cores} core available` };
  if (!hasTaskset()) return { loadgen: null, targets: null, reason: "taskset not found (util-linux)" };
  const loadgen = cores - 1;
  execFileSync("taskset", ["-a", "-p", "-c", String(loadgen), String(process.pid)], { stdio: "ignore" });
  return { loadgen, targets: 0 };
}

// ---------------------------------------------------------------- target processes

/** A benchmark target running in its own process. */
export interface Target extends TargetInfo {
  kind: "nimbus" | "bare";
  /** The last lines the target wrote to stderr (for error messages). */
  stderrTail(): string;
  /** Whether the process is still running. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after 6 s; resolves when it has exited. */
  stop(): Promise<void>;
}

const SERVER_TS = join(ROOT, "bench/server.ts");

/**
 * Starts `bench/server.ts` in a child process (on `core` when given) and waits for READY
 * (30 s at most). `extraNodeArgs` go to that node process (e.g. `--cpu-prof`).
 */
export async function startTarget(
  kind: "nimbus" | "bare",
  core: number | null,
  opts?: NimbusTargetOptions,
  extraNodeArgs: string[] = [],
): Promise<Target> {
  const nodeArgs = [
    "--no-node-snapshot",
    "--disable-warning=ExperimentalWarning",
    ...extraNodeArgs,
    SERVER_TS,
    kind,
  ];
  if (opts) nodeArgs.push(JSON.stringify(opts));
  // taskset execs node in place, so the child's pid is the server's pid.
  const [cmd, args] =
    core === null
      ? [process.execPath, nodeArgs]
      : ["taskset", ["-c", String(core), process.execPath, ...nodeArgs]];
  const child: ChildProcess = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], cwd: ROOT });
  let stderr = "";
  let exited = false;
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    stderr = (stderr + s).slice(-4000);
  });
  const exit = new Promise<void>((res) =>
    child.on("exit", () => {
      exited = true;
      res();
    }),
  );
  const info = await new Promise<TargetInfo>((res, rej) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      rej(
        new Error(
          `the ${kind} target did not start within 90 s (a loaded machine starts it slowly):\n${stderr}`,
        ),
      );
    }, 90_000);
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const m = /^READY (.*)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        res(JSON.parse(m[1]!) as TargetInfo);
      }
    });
    void exit.then(() => {
      clearTimeout(timer);
      rej(new Error(`the ${kind} target exited before it was ready:\n${stderr}`));
    });
  });
  return {
    ...info,
    kind,
    stderrTail: () => stderr,
    alive: () => !exited,
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 6_000);
      await exit;
      clearTimeout(t);
    },
  };
}

// ---------------------------------------------------------------- HTTP

/** One keep-alive agent for the benchmark's own single requests (not autocannon's). */
export const agent = new Agent({ keepAlive: true, maxSockets: 4 });

/** A response of {@link timedGet}. */
export interface TimedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Client-side time from sending the request to the end of the response body, ms. */
  ms: number;
}

/** Sends one request to 127.0.0.1 and times it to the last byte (bounded by `timeoutMs`). */
export function httpRequest(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<TimedResponse> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const req = request(url, { method: init.method ?? "GET", headers: init.headers, agent }, (r) => {
      const chunks: Buffer[] = [];
      r.on("data", (c: Buffer) => chunks.push(c));
      r.on("end", () =>
        res({
          status: r.statusCode ?? 0,
          headers: r.headers,
          body: Buffer.concat(chunks).toString("utf8"),
          ms: performance.now() - t0,
        }),
      );
      r.on("error", rej);
    });
    req.setTimeout(init.timeoutMs ?? 30_000, () =>
      req.destroy(new Error(`${url}: no answer within the timeout`)),
    );
    req.on("error", rej);
    req.end(init.body);
  });
}

/** Calls the control API with the admin key; throws on a non-2xx answer. */
export async function api<T = any>(target: Target, method: string, path: string, body?: unknown): Promise<T> {
  const r = await httpRequest(`${target.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${target.adminKey}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    timeoutMs: 60_000,
  });
  if (r.status < 200 || r.status > 299) {
    throw new Error(`${method} ${path} answered ${r.status}: ${r.body.slice(0, 500)}`);
  }
  return JSON.parse(r.body) as T;
}

const bundles = new Map<string, { code: string; sourceMap: string }>();

/** Bundles `entry` (once) and deploys it as `name` with `config`; returns the version number. */
export async function deploy(
  target: Target,
  name: string,
  entry: string,
  config: Record<string, unknown>,
): Promise<number> {
  let b = bundles.get(entry);
  if (!b) {
    const built = await bundle(entry);
    b = { code: built.code, sourceMap: built.sourceMap };
    bundles.set(entry, b);
  }
  const r = await api<{ version: { version: number } }>(
    target,
    "POST",
    `/api/v1/functions/${name}/versions`,
    {
      ...b,
      config,
    },
  );
  return r.version.version;
}

/** Polls `until` every `everyMs` for at most `maxMs`; throws `what` on timeout. */
export async function waitFor(
  what: string,
  until: () => Promise<boolean>,
  maxMs = 10_000,
  everyMs = 20,
): Promise<void> {
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline) {
    if (await until()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${maxMs} ms waiting for ${what}`);
}

// ---------------------------------------------------------------- statistics

/** Percentiles of a sample set, ms. */
export interface Summary {
  n: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Nearest-rank percentile of sorted values. */
function rank(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Summarises samples (ms). With fewer than 100 samples p99 is the maximum: say so when reporting. */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    min: sorted.length ? sorted[0]! : Number.NaN,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    p50: rank(sorted, 50),
    p90: rank(sorted, 90),
    p99: rank(sorted, 99),
    p999: rank(sorted, 99.9),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
  };
}

// ---------------------------------------------------------------- CPU accounting

/** CPU time (user + system) of a process and of all its descendants, ms. */
export interface TreeCpu {
  /** The process itself (the gateway, or the bare server). */
  root: number;
  /** Its descendants (instances, their bwrap and shell wrappers), by pid. */
  descendants: Map<number, number>;
}

const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux

function readStat(pid: number): { ppid: number; cpuMs: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS };
  } catch {
    return null;
  }
}

/** Reads the CPU time of `rootPid` and its descendants from /proc (null where /proc is absent). */
export function treeCpu(rootPid: number): TreeCpu | null {
  const root = readStat(rootPid);
  if (!root) return null;
  const children = new Map<number, number[]>();
  const cpu = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = readStat(pid);
    if (!st) continue;
    cpu.set(pid, st.cpuMs);
    const list = children.get(st.ppid);
    if (list) list.push(pid);
    else children.set(st.ppid, [pid]);
  }
  const descendants = new Map<number, number>();
  const stack = [...(children.get(rootPid) ?? [])];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    descendants.set(pid, cpu.get(pid) ?? 0);
    stack.push(...(children.get(pid) ?? []));
  }
  return { root: root.cpuMs, descendants };
}

/**
 * Process time (user, nice, system, steal) of each core since boot, ms; [] without /proc/stat.
 * Interrupt time is left out: loopback traffic of the target itself is processed there.
 */
export function coreBusyMs(): number[] {
  try {
    const out: number[] = [];
    for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
      const m = /^cpu(\d+) (.*)$/.exec(line);
      if (!m) continue;
      const v = m[2]!.trim().split(/\s+/).map(Number);
      // user nice system idle iowait irq softirq steal
      out[Number(m[1])] = (v[0]! + v[1]! + v[2]! + v[7]!) * TICK_MS;
    }
    return out;
  } catch {
    return [];
  }
}

/** CPU spent between two readings, ms (a process that appeared in between counts from 0). */
export function cpuDelta(a: TreeCpu, b: TreeCpu): { root: number; descendants: number } {
  let d = 0;
  for (const [pid, ms] of b.descendants) d += ms - (a.descendants.get(pid) ?? 0);
  return { root: b.root - a.root, descendants: Math.max(0, d) };
}

// ---------------------------------------------------------------- load generation

/** One autocannon measurement. */
export interface LoadResult {
  url: string;
  connections: number;
  durationS: number;
  /** 2xx responses per second over the measured window. */
  rps: number;
  /** Latency of 2xx responses, ms, at microsecond resolution (autocannon's own is whole ms). */
  latency: Summary;
  requests2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /**
   * CPU the target spent per 2xx response during the measured window, µs (from /proc, 10 ms
   * ticks): `root` is the server process (the gateway), `descendants` its instances.
   */
  cpuUsPerReq?: { root: number; descendants: number };
  /**
   * Share of the target core (when pinned) used by processes other than the target during
   * the measured window, %: other sessions' work on a shared machine disturbs the figures.
   */
  othersOnTargetCorePct?: number;
}

/** Latencies kept per run at most (a bound on memory; at ~20k req/s a 10 s run needs 200k). */
const MAX_SAMPLES = 2_000_000;

function cannon(
  url: string,
  connections: number,
  durationS: number,
  onResponse?: (status: number, ms: number) => void,
): Promise<CannonResult> {
  return new Promise((res, rej) => {
    const inst = autocannon(
      { url, connections, duration: durationS, pipelining: 1, timeout: 10 },
      (err, result) => (err ? rej(err) : res(result)),
    );
    if (onResponse) {
      inst.on("response", (_client: unknown, status: number, _bytes: number, ms: number) =>
        onResponse(status, ms),
      );
    }
  });
}

/**
 * Runs autocannon against `url`: `warmupS` seconds unrecorded (instances start, JIT warms),
 * then `durationS` seconds measured. Latencies are collected from each response event; the
 * CPU time of `cpuPid` (and its descendants) is read before and after the measured window.
 */
export async function load(
  url: string,
  connections: number,
  durationS: number,
  warmupS: number,
  cpuPid?: number,
  targetCore?: number | null,
): Promise<LoadResult> {
  if (warmupS > 0) await cannon(url, connections, warmupS);
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let ok = 0;
  const cpu0 = cpuPid === undefined ? null : treeCpu(cpuPid);
  const busy0 = coreBusyMs();
  const t0 = performance.now();
  const r = await cannon(url, connections, durationS, (status, ms) => {
    if (status < 200 || status > 299) return;
    ok++;
    if (n < MAX_SAMPLES) lat[n++] = ms;
  });
  const elapsedS = (performance.now() - t0) / 1000;
  const cpu1 = cpuPid === undefined ? null : treeCpu(cpuPid);
  const busy1 = coreBusyMs();
  const cpu = cpu0 && cpu1 && ok > 0 ? cpuDelta(cpu0, cpu1) : null;
  let othersOnTargetCorePct: number | undefined;
  if (cpu && targetCore != null && busy0[targetCore] !== undefined && busy1[targetCore] !== undefined) {
    const coreBusy = busy1[targetCore]! - busy0[targetCore]!;
    othersOnTargetCorePct = Math.max(0, (100 * (coreBusy - cpu.root - cpu.descendants)) / (elapsedS * 1000));
  }
  return {
    url,
    connections,
    durationS: elapsedS,
    rps: ok / elapsedS,
    latency: summarize(lat.subarray(0, n)),
    requests2xx: ok,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    cpuUsPerReq: cpu
      ? { root: (cpu.root * 1000) / ok, descendants: (cpu.descendants * 1000) / ok }
      : undefined,
    othersOnTargetCorePct,
  };
}
