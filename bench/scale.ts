/**
 * `npm run bench -- scale` (or `node --no-node-snapshot bench/scale.ts`): autoscaling under
 * load (issue 4, "Shows it"). Three scenarios, each against a fresh Nimbus server in its own
 * process (bench/server.ts), with autocannon in this process, all on 127.0.0.1:
 *
 * 1. **burst**: 1,000 requests at once (1,000 connections, one request each) at a function
 *    with no instance: time until all are answered, errors and non-2xx (must be 0),
 *    instances reached, cold starts; then the same burst on the warm instances and against
 *    the bare server (what 1,000 fresh connections cost by themselves).
 * 2. **connections**: 10,000 concurrent keep-alive connections held for 30 s against one
 *    function (concurrency 500 per instance, maxQueue 10,000): throughput, p99, errors,
 *    how many connections were answered; then the bare server under the same connections
 *    for 10 s (what the load generator manages).
 * 3. **mixed**: 100 functions, 10 hot and 90 cold (9 % of the requests), against a bare
 *    `node:http` server given the same request list in the same run: total throughput and
 *    the ratio, for Nimbus from zero instances and again once every function has one.
 *
 * For each scenario a timeline is sampled (2xx/s, p50/p99 of the responses that arrived in
 * each interval, instances idle + busy + starting) and drawn as an SVG chart
 * (`bench/results/scale-<scenario>.svg`); every figure goes into
 * `bench/results/scale-<time>Z.json` and the table into `bench/results/latest-scale.md`.
 *
 * Options: `--only burst,connections,mixed`, `--burst <n>` (1000), `--connections <n>`
 * (10000), `--hold <s>` (30), `--ramp <s>` (0: all connections opened at once; else over that
 * many seconds in groups of 500), `--functions <n>` (100), `--mixed-connections <n>` (100),
 * `--mixed-duration <s>` (12), `--no-pin`, `--no-sandbox`, `--no-save`.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon, { type Options as CannonOptions, type Result as CannonResult } from "autocannon";
import { type ChartSpec, lineChart } from "./chart.ts";
import {
  agent,
  api,
  deploy,
  HELLO_FN,
  httpRequest,
  type Pinning,
  pinSelf,
  RESULTS_DIR,
  ROOT,
  type Summary,
  sleep,
  startTarget,
  summarize,
  type Target,
  waitFor,
} from "./harness.ts";

// ---------------------------------------------------------------- options

const SCENARIOS = ["burst", "connections", "mixed"] as const;
/** A scenario's name. */
export type Scenario = (typeof SCENARIOS)[number];

/** Settings of a scale run. */
export interface ScaleOptions {
  /** Which scenarios run, in this order. @default all three */
  scenarios: Scenario[];
  /** Requests (and connections) in the burst. @default 1000 */
  burst: number;
  /** Concurrent keep-alive connections in the connections scenario. @default 10000 */
  connections: number;
  /** How long those connections are held, s. @default 30 */
  holdS: number;
  /**
   * Over how long those connections are opened, s, in groups of 500 (0: all in the same
   * instant). A ramp does not spare the accept queue: the gateway, busy serving the first
   * groups, accepts the later ones more slowly. @default 0
   */
  rampS: number;
  /** Functions in the mixed scenario. @default 100 */
  functions: number;
  /** Of which hot (the rest share `coldShare` of the requests). @default 10 */
  hotFunctions: number;
  /** Connections of the mixed scenario. @default 100 */
  mixedConnections: number;
  /** Length of each mixed measurement (bare, Nimbus from zero, Nimbus warm), s. @default 12 */
  mixedDurationS: number;
  /** Pin the targets to core 0 and the load generator to the last core. @default true */
  pin: boolean;
  /** Instances in bubblewrap + cgroups. @default true */
  sandbox: boolean;
  /** Write the JSON, SVG charts and markdown into bench/results. @default true */
  save: boolean;
  /** Progress messages. @default stderr */
  log: (m: string) => void;
  /** The command line to quote in the report. @default "npm run bench -- scale" */
  command: string;
}

/** The defaults of {@link ScaleOptions}. */
export const DEFAULT_SCALE: ScaleOptions = {
  scenarios: [...SCENARIOS],
  burst: 1000,
  connections: 10_000,
  holdS: 30,
  rampS: 0,
  functions: 100,
  hotFunctions: 10,
  mixedConnections: 100,
  mixedDurationS: 12,
  pin: true,
  sandbox: true,
  save: true,
  log: (m) => console.error(m),
  command: "npm run bench -- scale",
};

/** The function configurations each scenario deploys (bench/functions/hello.ts). */
export const SCALE_CONFIGS = {
  /** The defaults a user gets: concurrency 1, maxInstances 10, maxQueue 1000. */
  burst: {},
  /** 500 requests at once per instance, 20 instances at most, a queue that holds all 10,000. */
  connections: { concurrency: 500, maxInstances: 20, maxQueue: 10_000 },
  /** Every one of the 100 functions: 10 requests at once per instance, ≤10 instances. */
  mixed: { concurrency: 10 },
} as const;

/** Pre-started runtimes per memory size on every Nimbus target (the server's default). */
const PREWARM = 2;

/** Cold functions get this share of the mixed requests (one list entry each per 1,000). */
const MIXED_LIST_LENGTH = 1000;

// ---------------------------------------------------------------- timeline

/** One sampling interval. */
export interface TimelinePoint {
  /** End of the interval, s since the load started. */
  t: number;
  /** 2xx responses per second in the interval. */
  rps: number;
  /** Latency of the 2xx responses that arrived in the interval, ms (null: none arrived). */
  p50: number | null;
  p99: number | null;
  non2xx: number;
  errors: number;
}

/** One poll of the server's instance counts. */
export interface InstanceSample {
  /** s since the load started (when the answer arrived). */
  t: number;
  /** idle + busy + starting (mixed: started instances of all functions; see the report). */
  instances: number;
  starting?: number;
  busy?: number;
  queued?: number;
  /** Invocations running machine-wide. */
  running?: number;
}

/**
 * Collects autocannon's responses into fixed intervals and polls instance counts, so that a
 * chart can show req/s, p50/p99 and instances over time.
 */
class Timeline {
  readonly intervalMs: number;
  private t0 = 0;
  private readonly buckets: { ok: number; non2xx: number; errors: number; lat: number[] }[] = [];
  /** Polls, with `at` = performance.now() when the answer arrived. */
  private readonly polls: (Omit<InstanceSample, "t"> & { at: number })[] = [];
  /** Every 2xx latency, ms. */
  readonly all: number[] = [];
  non2xx = 0;
  errors = 0;
  /** ms since the start when the last response (of any status) arrived. */
  lastResponseMs = 0;
  private polling = false;
  private pollLoop: Promise<void> | undefined;

  constructor(intervalMs: number) {
    this.intervalMs = intervalMs;
  }

  /**
   * Sets time zero. Called before polling starts, and again when autocannon has set up its
   * connections and starts sending (setting up 10,000 clients takes a while).
   */
  start(): void {
    this.t0 = performance.now();
  }

  /** The instance polls, in s since time zero (negative: before the load started). */
  get instances(): InstanceSample[] {
    return this.polls.map(({ at, ...s }) => ({ t: Math.round((at - this.t0) / 10) / 100, ...s }));
  }

  private bucket(): { ok: number; non2xx: number; errors: number; lat: number[] } {
    const now = performance.now() - this.t0;
    const i = Math.max(0, Math.floor(now / this.intervalMs));
    while (this.buckets.length <= i) this.buckets.push({ ok: 0, non2xx: 0, errors: 0, lat: [] });
    return this.buckets[i]!;
  }

  response(status: number, ms: number): void {
    const b = this.bucket();
    this.lastResponseMs = performance.now() - this.t0;
    if (status >= 200 && status <= 299) {
      b.ok++;
      b.lat.push(ms);
      this.all.push(ms);
    } else {
      b.non2xx++;
      this.non2xx++;
    }
  }

  /** Errors by code (ECONNRESET, "request timed out", …). */
  readonly errorKinds: Record<string, number> = {};

  error(err?: unknown): void {
    this.bucket().errors++;
    this.errors++;
    const e = err as { code?: string; message?: string } | undefined;
    const kind = e?.code ?? e?.message ?? "unknown";
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
  }

  /** Seconds since the start. */
  now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  /** Polls `read` every interval until {@link stopPolling}. */
  startPolling(read: () => Promise<Omit<InstanceSample, "t">>): void {
    this.polling = true;
    this.pollLoop = (async () => {
      while (this.polling) {
        const due = performance.now() + this.intervalMs;
        try {
          const s = await read();
          this.polls.push({ at: performance.now(), ...s });
        } catch {
          // A poll that fails under load leaves a gap in the instance line; the load goes on.
        }
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
      }
    })();
  }

  async stopPolling(): Promise<void> {
    this.polling = false;
    await this.pollLoop;
  }

  points(): TimelinePoint[] {
    const s = this.intervalMs / 1000;
    return this.buckets.map((b, i) => {
      const sorted = b.lat.sort((x, y) => x - y);
      const pick = (p: number): number | null =>
        sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]! : null;
      return {
        t: Math.round((i + 1) * s * 1000) / 1000,
        rps: b.ok / s,
        p50: pick(0.5),
        p99: pick(0.99),
        non2xx: b.non2xx,
        errors: b.errors,
      };
    });
  }

  maxInstances(): number {
    return this.instances.reduce((m, s) => Math.max(m, s.instances), 0);
  }

  /** Latency of the 2xx responses that arrived between `fromS` and `toS`. */
  summaryBetween(fromS: number, toS: number): Summary {
    const s = this.intervalMs / 1000;
    const lat: number[] = [];
    this.buckets.forEach((b, i) => {
      if (i * s >= fromS && (i + 1) * s <= toS) for (const v of b.lat) lat.push(v);
    });
    return summarize(lat);
  }
}

/** Options of autocannon this suite uses beyond bench/autocannon.d.ts. */
interface CannonRunOptions extends CannonOptions {
  requests?: { method?: string; path: string }[];
  setupClient?: (client: { setRequests(r: { method?: string; path: string }[]): void }) => void;
}

/** What a load run reports back (summed over its waves). */
interface CannonOutcome {
  result: Pick<CannonResult, "non2xx" | "errors" | "timeouts">;
  answeredClients: number;
  /** When every connection had had an answer, s since time zero (null: never). */
  allAnsweredAtS: number | null;
  /** From autocannon's start (connections set up) to its end, s. */
  windowS: number;
}

/**
 * One load run feeding `tl`, stopped after `deadlineS` whatever happens. With `waves` > 1 the
 * connections are opened in that many equal groups `gapMs` apart (each group its own
 * autocannon instance, all ending together), as clients arriving over a moment rather than in
 * the same millisecond. Time zero of `tl` is when the first group starts sending.
 */
function cannon(
  opts: CannonRunOptions,
  tl: Timeline,
  deadlineS: number,
  waves = 1,
  gapMs = 0,
): Promise<CannonOutcome> {
  const connections = opts.connections ?? 10;
  const answered = new WeakSet<object>();
  let answeredClients = 0;
  let allAnsweredAtS: number | null = null;
  const instances: { stop(): void }[] = [];
  const guard = setTimeout(() => {
    for (const i of instances) i.stop();
  }, deadlineS * 1000);
  const one = (w: number): Promise<CannonResult> =>
    new Promise((resolve, reject) => {
      const per = Math.floor(connections / waves) + (w < connections % waves ? 1 : 0);
      const o: CannonRunOptions = { ...opts, connections: per };
      // Every group ends when the first one does.
      if (opts.duration !== undefined) o.duration = Math.max(1, opts.duration - (w * gapMs) / 1000);
      const inst = autocannon(o, (err, result) => (err ? reject(err) : resolve(result)));
      instances.push(inst);
      if (w === 0) inst.on("start", () => tl.start());
      inst.on("response", (client: object, status: number, _bytes: number, ms: number) => {
        tl.response(status, ms);
        if (!answered.has(client)) {
          answered.add(client);
          answeredClients++;
          if (answeredClients === connections) allAnsweredAtS = tl.now();
        }
      });
      inst.on("reqError", (err: unknown) => tl.error(err));
    });
  return (async () => {
    const runs: Promise<CannonResult>[] = [];
    for (let w = 0; w < waves; w++) {
      if (w > 0) await sleep(gapMs);
      runs.push(one(w));
    }
    const results = await Promise.all(runs);
    clearTimeout(guard);
    return {
      result: {
        non2xx: results.reduce((n, r) => n + r.non2xx, 0),
        errors: results.reduce((n, r) => n + r.errors, 0),
        timeouts: results.reduce((n, r) => n + r.timeouts, 0),
      },
      answeredClients,
      allAnsweredAtS,
      windowS: tl.now(),
    };
  })();
}

// ---------------------------------------------------------------- results

/** What every scenario reports. */
export interface ScenarioResult {
  scenario: Scenario;
  /** The function config deployed (hello.ts). */
  config: Record<string, unknown>;
  connections: number;
  /** 2xx responses. */
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts (autocannon's `errors`, which include `timeouts`). */
  errors: number;
  timeouts: number;
  /** The errors by code. */
  errorKinds?: Record<string, number>;
  /** Latency of the 2xx responses, ms (microsecond resolution). */
  latency: Summary;
  /** The highest instance count sampled (idle + busy + starting). */
  maxInstances: number;
  /** Sampling interval of the timeline, ms. */
  intervalMs: number;
  timeline: TimelinePoint[];
  instances: InstanceSample[];
  /** Chart file, relative to bench/results. */
  chart?: string;
  /** Kernel TCP counters over the Nimbus run (machine-wide: other sessions' traffic counts too). */
  netstat?: NetCounters;
}

/**
 * Kernel TCP counters (`/proc/net/netstat`, TcpExt): `ListenOverflows` counts connections a
 * listener's accept queue had no room for (the client retries its SYN after 1 s, 3 s, 7 s…);
 * `TCPSynRetrans` the SYNs clients sent again.
 */
export interface NetCounters {
  listenOverflows: number;
  synRetrans: number;
}

function readNet(): NetCounters | null {
  try {
    const lines = readFileSync("/proc/net/netstat", "utf8").split("\n");
    const i = lines.findIndex((l) => l.startsWith("TcpExt:"));
    const keys = lines[i]!.split(/\s+/);
    const vals = lines[i + 1]!.split(/\s+/).map(Number);
    const get = (k: string): number => vals[keys.indexOf(k)] ?? Number.NaN;
    return { listenOverflows: get("ListenOverflows"), synRetrans: get("TCPSynRetrans") };
  } catch {
    return null;
  }
}

function netDelta(a: NetCounters | null, b: NetCounters | null): NetCounters | undefined {
  if (!a || !b) return undefined;
  return { listenOverflows: b.listenOverflows - a.listenOverflows, synRetrans: b.synRetrans - a.synRetrans };
}

/** Scenario 1. */
export interface BurstResult extends ScenarioResult {
  scenario: "burst";
  requests: number;
  /** From the first request sent to the last answer, ms. */
  timeToAllMs: number;
  /** Instances at zero before the burst (checked). */
  instancesBefore: number;
  /** Invocations the server recorded as cold starts. */
  coldStarts?: number;
  /**
   * The same burst again once the instances are warm, and against the bare server: what the
   * 1,000 fresh connections cost by themselves.
   */
  warmRepeat?: BurstReference;
  bare?: BurstReference;
}

/** A reference burst (no timeline). */
export interface BurstReference {
  timeToAllMs: number;
  netstat?: NetCounters;
  ok: number;
  non2xx: number;
  errors: number;
  latency: Summary;
}

/** Scenario 2. */
export interface ConnectionsResult extends ScenarioResult {
  scenario: "connections";
  holdS: number;
  /** The connections were opened over this long, s, in `waves` groups (0 and 1: all at once). */
  rampS: number;
  waves: number;
  /** Measured window, s (autocannon's duration). */
  durationS: number;
  /** 2xx per second over the whole window. */
  rps: number;
  /** Median of the per-interval 2xx/s in the second half of the window (past the ramp). */
  rpsSecondHalfMedian: number | null;
  /** Latency of the responses that arrived in the second half of the window. */
  latencySecondHalf: Summary;
  /** Connections that got at least one answer, and when the last of them did (s). */
  answeredConnections: number;
  allAnsweredAtS: number | null;
  /** The bare server under the same connections (shorter): what the load generator manages. */
  bare?: {
    durationS: number;
    rps: number;
    rpsSecondHalfMedian: number | null;
    latency: Summary;
    latencySecondHalf: Summary;
    non2xx: number;
    errors: number;
    answeredConnections: number;
    allAnsweredAtS: number | null;
    netstat?: NetCounters;
    errorKinds: Record<string, number>;
    timeline: TimelinePoint[];
  };
}

/** Scenario 3, one target. */
export interface MixedRun {
  target: "nimbus" | "bare";
  durationS: number;
  ok: number;
  non2xx: number;
  errors: number;
  rps: number;
  /** 2xx/s over the second half of the window (instances started by then). */
  rpsSecondHalf: number;
  latency: Summary;
  timeline: TimelinePoint[];
  errorKinds: Record<string, number>;
}

/** Scenario 3. */
export interface MixedResult extends ScenarioResult {
  scenario: "mixed";
  functions: number;
  hotFunctions: number;
  /** Share of the requests that go to cold functions. */
  coldShare: number;
  durationS: number;
  deploySeconds: number;
  /** Nimbus from zero: every function's first requests wait for its instances to start. */
  nimbus: MixedRun;
  /** Nimbus again right after, once every function has an instance (the same list). */
  nimbusWarm?: MixedRun;
  bare: MixedRun;
  /** nimbus (from zero) rps ÷ bare rps, over the whole window and over its second half. */
  ratio: number;
  ratioSecondHalf: number;
  /** nimbus (warm) rps ÷ bare rps. */
  ratioWarm?: number;
  /** Functions that had at least one instance at the end of the from-zero run. */
  functionsWithInstances: number;
  /**
   * How long after the from-zero run every function had an instance (each one without was
   * called once), s (null: not within 30 s).
   */
  allStartedAfterS: number | null;
  /** The warm run's instance samples. */
  instancesWarm: InstanceSample[];
}

/** A whole scale run. */
export interface ScaleResults {
  suite: "scale";
  date: string;
  command: string;
  machine: { cpus: number; model: string; node: string; kernel: string };
  pinning: Pinning;
  sandbox: unknown;
  revision: { commit: string; changed: string[] };
  loadavg: { start: number; end: number };
  params: Omit<ScaleOptions, "log" | "save" | "command">;
  burst?: BurstResult;
  connections?: ConnectionsResult;
  mixed?: MixedResult;
  /** Scenarios that failed, with the reason. */
  failed: { scenario: Scenario; reason: string }[];
  elapsedS: number;
}

// ---------------------------------------------------------------- helpers

interface FunctionInfo {
  instances: { starting: number; idle: number; busy: number; queued: number };
}

async function fnInstances(target: Target, name: string): Promise<Omit<InstanceSample, "t">> {
  const f = await api<FunctionInfo>(target, "GET", `/api/v1/functions/${name}`);
  const i = f.instances;
  return {
    instances: i.idle + i.busy + i.starting,
    starting: i.starting,
    busy: i.busy,
    queued: i.queued,
  };
}

function revision(): { commit: string; changed: string[] } {
  try {
    const git = (...a: string[]) => execFileSync("git", a, { cwd: ROOT, encoding: "utf8" }).trim();
    // Not trimmed: each porcelain line starts with a two-letter status that may be a space.
    const changed = execFileSync("git", ["status", "--porcelain", "--", "src", "package.json"], {
      cwd: ROOT,
      encoding: "utf8",
    })
      .split("\n")
      .filter(Boolean)
      .map((l) => l.slice(3));
    return { commit: git("rev-parse", "--short", "HEAD"), changed };
  } catch {
    return { commit: "unknown", changed: [] };
  }
}

/** A deterministic shuffle (mulberry32), so every run sends the same request list. */
function shuffle<T>(a: T[], seed: number): T[] {
  let s = seed >>> 0;
  const rnd = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function median(values: number[]): number | null {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------- scenarios

/** One burst without sampling (references). */
async function referenceBurst(url: string, n: number): Promise<BurstReference> {
  const tl = new Timeline(1000);
  tl.start();
  const net0 = readNet();
  const { result } = await cannon({ url, connections: n, amount: n, timeout: 20 }, tl, 30);
  return {
    netstat: netDelta(net0, readNet()),
    timeToAllMs: tl.lastResponseMs,
    ok: tl.all.length,
    non2xx: result.non2xx,
    errors: result.errors,
    latency: summarize(tl.all),
  };
}

async function burst(
  nimbus: Target,
  startBare: () => Promise<Target>,
  o: ScaleOptions,
): Promise<BurstResult> {
  const name = "scale-burst";
  const config = SCALE_CONFIGS.burst;
  await deploy(nimbus, name, HELLO_FN, config);
  await waitFor(`${name} to have no instance`, async () => (await fnInstances(nimbus, name)).instances === 0);
  const before = (await fnInstances(nimbus, name)).instances;
  // A burst is over in well under a second: sample every 50 ms so the chart has a shape.
  const tl = new Timeline(50);
  tl.start();
  tl.startPolling(() => fnInstances(nimbus, name));
  o.log(`  ${o.burst} requests at once on ${o.burst} connections`);
  const net0 = readNet();
  const { result } = await cannon(
    { url: `${nimbus.url}/fn/${name}`, connections: o.burst, amount: o.burst, timeout: 20 },
    tl,
    30,
  );
  const timeToAllMs = tl.lastResponseMs;
  const netstat = netDelta(net0, readNet());
  // Keep sampling a little: instances stay up (idle) after the burst.
  await sleep(Math.max(500, timeToAllMs * 0.25));
  await tl.stopPolling();
  let coldStarts: number | undefined;
  try {
    const r = await api<{ invocations: { coldStart: boolean }[] }>(
      nimbus,
      "GET",
      `/api/v1/functions/${name}/invocations?limit=${o.burst + 10}`,
    );
    coldStarts = r.invocations.filter((i) => i.coldStart).length;
  } catch (err) {
    o.log(`  (no invocation records: ${(err as Error).message.split("\n")[0]})`);
  }
  o.log("  the same burst again, instances warm; then against the bare server");
  const warmRepeat = await referenceBurst(`${nimbus.url}/fn/${name}`, o.burst);
  const bare = await referenceBurst(`${(await startBare()).url}/`, o.burst);
  return {
    scenario: "burst",
    netstat,
    warmRepeat,
    bare,
    config,
    connections: o.burst,
    requests: o.burst,
    ok: tl.all.length,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    errorKinds: tl.errorKinds,
    latency: summarize(tl.all),
    timeToAllMs,
    instancesBefore: before,
    maxInstances: tl.maxInstances(),
    coldStarts,
    intervalMs: tl.intervalMs,
    timeline: tl.points(),
    instances: tl.instances,
  };
}

/** Connections per group when a ramp opens them in groups. */
const WAVE = 500;

/** [groups, ms between groups] for the connections scenario. */
function ramp(o: ScaleOptions): [number, number] {
  if (o.rampS <= 0 || o.connections <= WAVE) return [1, 0];
  const waves = Math.ceil(o.connections / WAVE);
  return [waves, (o.rampS * 1000) / (waves - 1)];
}

async function connections(
  nimbus: Target,
  startBare: () => Promise<Target>,
  o: ScaleOptions,
): Promise<ConnectionsResult> {
  const name = "scale-connections";
  const config = SCALE_CONFIGS.connections;
  await deploy(nimbus, name, HELLO_FN, config);
  const tl = new Timeline(250);
  tl.start();
  tl.startPolling(() => fnInstances(nimbus, name));
  o.log(
    `  ${o.connections} keep-alive connections for ${o.holdS} s${o.rampS > 0 ? ` (opened over ${o.rampS} s in groups of ${WAVE})` : " (opened at once)"}`,
  );
  const net0 = readNet();
  const { result, answeredClients, allAnsweredAtS, windowS } = await cannon(
    { url: `${nimbus.url}/fn/${name}`, connections: o.connections, duration: o.holdS, timeout: 10 },
    tl,
    o.holdS + 30,
    ...ramp(o),
  );
  const net1 = readNet();
  await sleep(500);
  await tl.stopPolling();
  const timeline = tl.points();
  const half = (points: TimelinePoint[], windowS: number): number | null =>
    median(points.filter((p) => p.t > windowS / 2 && p.t <= windowS).map((p) => p.rps));
  // The bare server under the same connections, for a shorter time: how far the load
  // generator (one core, one event loop) goes by itself.
  const bareS = Math.min(10, o.holdS);
  o.log(`  bare node:http: ${o.connections} keep-alive connections for ${bareS} s`);
  const bareTarget = await startBare();
  const btl = new Timeline(250);
  const bnet0 = readNet();
  btl.start();
  const b = await cannon(
    { url: `${bareTarget.url}/`, connections: o.connections, duration: bareS, timeout: 10 },
    btl,
    bareS + 30,
    ...ramp(o),
  );
  const bnet1 = readNet();
  const bTimeline = btl.points();
  return {
    scenario: "connections",
    rampS: o.rampS,
    waves: ramp(o)[0],
    bare: {
      durationS: b.windowS,
      rps: btl.all.length / b.windowS,
      rpsSecondHalfMedian: half(bTimeline, bareS),
      latency: summarize(btl.all),
      latencySecondHalf: btl.summaryBetween(bareS / 2, bareS),
      answeredConnections: b.answeredClients,
      errorKinds: btl.errorKinds,
      netstat: netDelta(bnet0, bnet1),
      non2xx: b.result.non2xx,
      errors: b.result.errors,
      allAnsweredAtS: b.allAnsweredAtS,
      timeline: bTimeline,
    },
    config,
    connections: o.connections,
    holdS: o.holdS,
    durationS: windowS,
    ok: tl.all.length,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    errorKinds: tl.errorKinds,
    rps: tl.all.length / windowS,
    rpsSecondHalfMedian: half(timeline, o.holdS),
    latencySecondHalf: tl.summaryBetween(o.holdS / 2, o.holdS),
    netstat: netDelta(net0, net1),
    latency: summarize(tl.all),
    answeredConnections: answeredClients,
    allAnsweredAtS,
    maxInstances: tl.maxInstances(),
    intervalMs: tl.intervalMs,
    timeline,
    instances: tl.instances,
  };
}

/** The mixed request list: every hot function many times, every cold one once, shuffled. */
function mixedList(o: ScaleOptions): { list: { path: string }[]; coldShare: number } {
  const cold = o.functions - o.hotFunctions;
  const perHot = Math.floor((MIXED_LIST_LENGTH - cold) / o.hotFunctions);
  const list: { path: string }[] = [];
  for (let i = 0; i < o.functions; i++) {
    const n = i < o.hotFunctions ? perHot : 1;
    for (let k = 0; k < n; k++) list.push({ path: `/fn/${mixedName(i)}` });
  }
  return { list: shuffle(list, 42), coldShare: cold / list.length };
}

function mixedName(i: number): string {
  return `scale-mix-${String(i).padStart(3, "0")}`;
}

async function mixedRun(
  target: Target,
  list: { path: string }[],
  o: ScaleOptions,
  poll?: () => Promise<Omit<InstanceSample, "t">>,
): Promise<{ run: MixedRun; instances: InstanceSample[] }> {
  const tl = new Timeline(250);
  tl.start();
  if (poll) tl.startPolling(poll);
  const { result, windowS } = await cannon(
    {
      url: target.url,
      connections: o.mixedConnections,
      duration: o.mixedDurationS,
      timeout: 10,
      requests: list,
      // Each connection walks the list from its own offset, so the functions are not hit in lockstep.
      setupClient: (client) => {
        const k = Math.floor(Math.random() * list.length);
        client.setRequests([...list.slice(k), ...list.slice(0, k)]);
      },
    },
    tl,
    o.mixedDurationS + 30,
  );
  if (poll) {
    await sleep(500);
    await tl.stopPolling();
  }
  const timeline = tl.points();
  const half = timeline.filter((p) => p.t > o.mixedDurationS / 2 && p.t <= o.mixedDurationS);
  return {
    run: {
      target: target.kind,
      durationS: windowS,
      ok: tl.all.length,
      non2xx: result.non2xx,
      errors: result.errors,
      rps: tl.all.length / windowS,
      // Intervals without a response have no entry: divide by the half window, not by the entries.
      rpsSecondHalf: (half.reduce((n, p) => n + p.rps, 0) * (tl.intervalMs / 1000)) / (o.mixedDurationS / 2),
      latency: summarize(tl.all),
      timeline,
      errorKinds: tl.errorKinds,
    },
    instances: tl.instances,
  };
}

async function mixed(
  nimbus: Target,
  startBare: () => Promise<Target>,
  o: ScaleOptions,
): Promise<MixedResult> {
  const config = SCALE_CONFIGS.mixed;
  const t0 = performance.now();
  o.log(`  deploying ${o.functions} functions`);
  // A few deploys at a time: each one checks the bundle in a sandbox.
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < o.functions) {
        const i = next++;
        await deploy(nimbus, mixedName(i), HELLO_FN, config);
      }
    }),
  );
  const deploySeconds = (performance.now() - t0) / 1000;
  o.log(`  deployed in ${deploySeconds.toFixed(1)} s`);
  const bare = await startBare();
  const check = await httpRequest(`${bare.url}/fn/${mixedName(0)}`);
  if (check.status !== 200) throw new Error(`the bare server answered ${check.status}`);
  const { list, coldShare } = mixedList(o);
  o.log(`  bare node:http: ${o.mixedConnections} connections, ${o.mixedDurationS} s, the same request list`);
  const b = await mixedRun(bare, list, o);
  o.log(
    `  nimbus: ${o.functions} functions (${o.hotFunctions} hot, ${(coldShare * 100).toFixed(0)} % of requests to the others), all at zero instances`,
  );
  let lastFunctionsWithInstances = 0;
  const poll = async (): Promise<Omit<InstanceSample, "t">> => {
    const [fns, status] = await Promise.all([
      api<{ functions: { name: string; instances: number }[] }>(nimbus, "GET", "/api/v1/functions"),
      api<{ machine: { runningInvocations: number } }>(nimbus, "GET", "/api/v1/status"),
    ]);
    let instances = 0;
    let withInstances = 0;
    for (const f of fns.functions) {
      if (!f.name.startsWith("scale-mix-")) continue;
      instances += f.instances;
      if (f.instances > 0) withInstances++;
    }
    lastFunctionsWithInstances = withInstances;
    return { instances, running: status.machine.runningInvocations };
  };
  const n = await mixedRun(nimbus, list, o, poll);
  const functionsWithInstances = lastFunctionsWithInstances;
  // Then the same load once every function has an instance: call each function that has
  // none once (a function the first run never reached included), at most 30 s.
  const t1 = performance.now();
  let allStartedAfterS: number | null = null;
  try {
    const fns = await api<{ functions: { name: string; instances: number }[] }>(
      nimbus,
      "GET",
      "/api/v1/functions",
    );
    const missing = fns.functions.filter((f) => f.name.startsWith("scale-mix-") && f.instances === 0);
    // All at once (fetch has no per-host socket limit, unlike the harness's agent).
    const answers = await Promise.all(
      missing.map(async (f) => {
        const r = await fetch(`${nimbus.url}/fn/${f.name}`, { signal: AbortSignal.timeout(30_000) });
        await r.arrayBuffer();
        return r.status;
      }),
    );
    const bad = answers.filter((status) => status !== 200).length;
    if (bad) o.log(`  ${bad} of ${missing.length} warm-up calls were not answered 200`);
    await waitFor(
      "every function to have an instance",
      async () => {
        await poll();
        return lastFunctionsWithInstances >= o.functions;
      },
      Math.max(1000, 30_000 - (performance.now() - t1)),
      250,
    );
    allStartedAfterS = (performance.now() - t1) / 1000;
  } catch (err) {
    o.log(
      `  only ${lastFunctionsWithInstances} of ${o.functions} functions have an instance: ${(err as Error).message.split("\n")[0]}`,
    );
  }
  o.log(`  nimbus again, ${lastFunctionsWithInstances} of ${o.functions} functions with an instance`);
  const w = await mixedRun(nimbus, list, o, poll);
  return {
    scenario: "mixed",
    config,
    connections: o.mixedConnections,
    functions: o.functions,
    hotFunctions: o.hotFunctions,
    coldShare,
    durationS: o.mixedDurationS,
    deploySeconds,
    ok: n.run.ok,
    non2xx: n.run.non2xx,
    errors: n.run.errors,
    timeouts: 0,
    latency: n.run.latency,
    maxInstances: n.instances.reduce((m, s) => Math.max(m, s.instances), 0),
    intervalMs: 250,
    timeline: n.run.timeline,
    instances: n.instances,
    nimbus: n.run,
    bare: b.run,
    ratio: n.run.rps / b.run.rps,
    ratioSecondHalf: n.run.rpsSecondHalf / b.run.rpsSecondHalf,
    nimbusWarm: w.run,
    ratioWarm: w.run.rps / b.run.rps,
    functionsWithInstances,
    allStartedAfterS,
    instancesWarm: w.instances,
  };
}

// ---------------------------------------------------------------- charts

const C = {
  rps: "#1f77b4",
  warm: "#ff7f0e",
  p50: "#2ca02c",
  p99: "#d62728",
  inst: "#9467bd",
  bare: "#7f7f7f",
};

function latencyPanel(points: TimelinePoint[], extra: ChartSpec["panels"][number]["series"] = []) {
  return {
    yLabel: "latency (ms)",
    log: true,
    series: [
      {
        label: "p50",
        color: C.p50,
        points: points.map((p) => [p.t, p.p50 ?? Number.NaN] as [number, number]),
      },
      {
        label: "p99",
        color: C.p99,
        points: points.map((p) => [p.t, p.p99 ?? Number.NaN] as [number, number]),
      },
      ...extra,
    ],
  };
}

/** Instances (all, busy with a request, starting) and the requests queued for them. */
function instancePanels(r: ScenarioResult) {
  const pts = (k: "instances" | "busy" | "starting" | "queued"): [number, number][] =>
    r.instances.map((s) => [s.t, s[k] ?? Number.NaN]);
  return [
    {
      yLabel: "instances",
      series: [
        { label: "idle+busy+starting", color: C.inst, points: pts("instances") },
        { label: "busy", color: C.p99, points: pts("busy") },
        { label: "starting", color: C.warm, dashed: true, points: pts("starting") },
      ],
    },
    {
      yLabel: "requests queued",
      series: [{ label: "waiting for an instance", color: C.bare, points: pts("queued") }],
    },
  ];
}

function rpsPoints(points: TimelinePoint[]): [number, number][] {
  return points.map((p) => [p.t, p.rps]);
}

/** The chart of one scenario. */
export function chartFor(r: ScenarioResult, subtitle: string): string {
  const xLabel = "time since the load started (s)";
  if (r.scenario === "burst") {
    const b = r as BurstResult;
    return lineChart({
      title: `Burst: ${b.requests.toLocaleString("en")} requests at once at a function with no instance`,
      subtitle,
      xLabel,
      markers: [{ x: b.timeToAllMs / 1000, label: `all answered (${Math.round(b.timeToAllMs)} ms)` }],
      panels: [
        {
          yLabel: "2xx per second",
          series: [{ label: "2xx/s", color: C.rps, points: rpsPoints(b.timeline) }],
        },
        latencyPanel(b.timeline),
        ...instancePanels(b),
      ],
    });
  }
  if (r.scenario === "connections") {
    const c = r as ConnectionsResult;
    return lineChart({
      title: `${c.connections.toLocaleString("en")} concurrent keep-alive connections held for ${c.holdS} s`,
      subtitle,
      xLabel,
      markers: c.allAnsweredAtS !== null ? [{ x: c.allAnsweredAtS, label: "every connection answered" }] : [],
      panels: [
        {
          yLabel: "2xx per second",
          series: [
            { label: "nimbus", color: C.rps, points: rpsPoints(c.timeline) },
            ...(c.bare
              ? [{ label: "bare node:http", color: C.bare, dashed: true, points: rpsPoints(c.bare.timeline) }]
              : []),
          ],
        },
        latencyPanel(c.timeline),
        ...instancePanels(c),
      ],
    });
  }
  const m = r as MixedResult;
  const warm = m.nimbusWarm;
  const p = (pts: TimelinePoint[], k: "p50" | "p99"): [number, number][] =>
    pts.map((x) => [x.t, x[k] ?? Number.NaN]);
  return lineChart({
    title: `${m.functions} functions under mixed load vs a bare node:http server (same request list)`,
    subtitle,
    xLabel:
      "time since each run started (s); the runs were one after the other: bare, nimbus from zero, nimbus warm",
    panels: [
      {
        yLabel: "2xx per second (gap: none)",
        log: true,
        series: [
          { label: "nimbus from zero", color: C.rps, points: rpsPoints(m.nimbus.timeline) },
          ...(warm ? [{ label: "nimbus warm", color: C.warm, points: rpsPoints(warm.timeline) }] : []),
          { label: "bare node:http", color: C.bare, dashed: true, points: rpsPoints(m.bare.timeline) },
        ],
      },
      {
        yLabel: "latency (ms)",
        log: true,
        series: [
          { label: "from zero p50", color: C.p50, points: p(m.nimbus.timeline, "p50") },
          { label: "from zero p99", color: C.p99, points: p(m.nimbus.timeline, "p99") },
          ...(warm
            ? [
                { label: "warm p50", color: C.p50, dashed: true, points: p(warm.timeline, "p50") },
                { label: "warm p99", color: C.p99, dashed: true, points: p(warm.timeline, "p99") },
              ]
            : []),
          { label: "bare p99", color: C.bare, dashed: true, points: p(m.bare.timeline, "p99") },
        ],
      },
      {
        yLabel: "instances (all functions)",
        series: [
          {
            label: "from zero",
            color: C.inst,
            points: m.instances.map((s) => [s.t, s.instances] as [number, number]),
          },
          {
            label: "warm",
            color: C.warm,
            points: m.instancesWarm.map((s) => [s.t, s.instances] as [number, number]),
          },
        ],
      },
    ],
  });
}

// ---------------------------------------------------------------- report

function f0(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : Math.round(v).toLocaleString("en");
}

function f2(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(2);
}

/** "Errors of <who> by kind: …" when there were any. */
function errorLine(who: string, kinds: Record<string, number> | undefined): string[] {
  const e = Object.entries(kinds ?? {});
  if (e.length === 0) return [];
  return [`Errors of ${who} by kind: ${e.map(([k, n]) => `${k} × ${n}`).join(", ")}.`, ""];
}

/** Observations computed from the instance samples, for the report. */
function limits(r: ScaleResults): string[] {
  const out: string[] = [];
  const after0 = (xs: InstanceSample[]): InstanceSample[] => xs.filter((x) => x.t >= 0);
  if (r.burst) {
    const xs = after0(r.burst.instances);
    const firstBusy = xs.find((x) => (x.busy ?? 0) > 0);
    const allReady = xs.find((x) => x.instances > 0 && x.starting === 0);
    // Instances serving while the others were still starting.
    const busyEarly = xs
      .filter((x) => allReady && x.t < allReady.t)
      .reduce((m, x) => Math.max(m, x.busy ?? 0), 0);
    if (firstBusy && allReady) {
      out.push(
        `- Burst: ${busyEarly} instance(s) were serving from ${firstBusy.t.toFixed(2)} s (pre-started runtimes; the server starts with ${PREWARM} per memory size); the other ${r.burst.maxInstances - busyEarly} were still starting (fresh processes) until ${allReady.t.toFixed(2)} s, so until then ${busyEarly} instance(s) at concurrency 1 drained the queue. Once all ${r.burst.maxInstances} were up the rest went in ${f0(r.burst.timeToAllMs - allReady.t * 1000)} ms. The same burst on warm instances took ${f0(r.burst.warmRepeat?.timeToAllMs)} ms and on the bare server ${f0(r.burst.bare?.timeToAllMs)} ms: that much is the cost of ${f0(r.burst.requests)} connections opened at once on this machine, not of the platform.`,
      );
    }
  }
  if (r.connections) {
    const c = r.connections;
    const xs = after0(c.instances);
    const maxBusy = xs.reduce((m, x) => Math.max(m, x.busy ?? 0), 0);
    const q = median(xs.filter((x) => x.t > c.holdS / 2).map((x) => x.queued ?? Number.NaN));
    const cc = (c.config as { concurrency?: number }).concurrency ?? 1;
    out.push(
      `- ${f0(c.connections)} connections: ${c.maxInstances} instances were started, but at most ${maxBusy} were ever busy: the machine-wide limit (1,000 invocations at once by default) ÷ concurrency ${cc} = ${Math.ceil(1000 / cc)} instances' worth; the other requests waited in the function's queue (median ${f0(q)} queued in the second half). The autoscaler sized the pool from the load (requests running + queued) without regard to that limit, and started those instances on the busy core while no request was being answered yet. Throughput in the second half (${f0(c.rpsSecondHalfMedian)} req/s) is the gateway's: one event loop, on the core shared with the instances; latency follows from it (Little's law).`,
    );
  }
  if (r.mixed) {
    const m = r.mixed;
    out.push(
      `- ${m.functions} functions from zero: after ${m.durationS} s of load only ${m.functionsWithInstances} had an instance (at most ${m.maxInstances} instances were counted). Each function's first request waits for a process to start; with ${m.functions} of them at once on one core shared with the gateway (and other sessions' work), starting them takes longer than the window, and every connection soon waits on a function still starting, so throughput collapses (${f0(m.nimbus.rps)} req/s). Warm, with ${m.instancesWarm.reduce((x, s) => Math.max(x, s.instances), 0)} instance processes sharing that core, Nimbus served ${f0(m.nimbusWarm?.rps)} req/s: ${f2(m.ratioWarm)} × bare.`,
    );
  }
  return out;
}

/** The markdown report of a scale run. */
export function scaleMarkdown(r: ScaleResults): string {
  const out: string[] = [];
  const pin =
    r.pinning.targets === null
      ? `not pinned (${r.pinning.reason})`
      : `gateway + instances and the bare server on core ${r.pinning.targets}, load generator (autocannon, this process) on core ${r.pinning.loadgen}`;
  const s = r.sandbox as { bwrap?: boolean; cgroups?: string | boolean } | undefined;
  out.push(
    "# Nimbus benchmark: scale",
    "",
    `Run ${r.date} with \`${r.command}\` (${Math.round(r.elapsedS)} s).`,
    ...(r.command.startsWith("npm run bench")
      ? []
      : [
          "",
          "(`npm run bench -- scale` runs the same once bench/run.ts hands the `scale` suite to `scaleMain()` of bench/scale.ts; the command above is the direct form.)",
        ]),
    "",
    `- Code: ${r.revision.commit}${r.revision.changed.length ? ` with uncommitted changes to ${r.revision.changed.join(", ")}` : ""}`,
    `- Machine: ${r.machine.cpus} × ${r.machine.model}, Linux ${r.machine.kernel}, Node ${r.machine.node}`,
    `- CPU pinning: ${pin}`,
    `- Sandbox: ${s ? `bubblewrap ${s.bwrap ? "on" : "off"}, cgroups ${s.cgroups ? String(s.cgroups) : "off"}` : "unknown"}`,
    `- Load average (1 min): ${r.loadavg.start.toFixed(2)} at the start, ${r.loadavg.end.toFixed(2)} at the end (2 cores; other sessions share this machine)`,
    "- Every scenario runs against a fresh Nimbus server (default server settings: machine limit 1,000 invocations at once, queue wait 10 s, autoscaler tick 1 s, 2 pre-started runtimes) deploying `bench/functions/hello.ts`.",
    "",
  );
  if (r.burst) {
    const b = r.burst;
    out.push(
      "## 1. Burst from zero",
      "",
      `${b.requests.toLocaleString("en")} requests sent at once (autocannon, ${b.connections.toLocaleString("en")} connections, one request each) at a function with ${b.instancesBefore} instances, config \`${JSON.stringify(b.config)}\` (the defaults: concurrency 1, maxInstances 10, maxQueue 1000).`,
      "",
      "| run | requests | 2xx | non-2xx | errors (timeouts) | all answered after | p50 ms | p99 ms | max ms | instances reached | cold starts (server records) | listen-queue overflows |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      `| **nimbus, from zero** | ${f0(b.requests)} | ${f0(b.ok)} | ${f0(b.non2xx)} | ${f0(b.errors)} (${f0(b.timeouts)}) | **${f0(b.timeToAllMs)} ms** | ${f2(b.latency.p50)} | ${f2(b.latency.p99)} | ${f2(b.latency.max)} | ${b.maxInstances} | ${b.coldStarts ?? "–"} | ${f0(b.netstat?.listenOverflows)} |`,
      ...(
        [
          ["nimbus, same burst again (instances warm)", b.warmRepeat],
          ["bare node:http, same burst", b.bare],
        ] as const
      ).flatMap(([label, x]) =>
        x
          ? [
              `| ${label} | ${f0(b.requests)} | ${f0(x.ok)} | ${f0(x.non2xx)} | ${f0(x.errors)} | ${f0(x.timeToAllMs)} ms | ${f2(x.latency.p50)} | ${f2(x.latency.p99)} | ${f2(x.latency.max)} | – | – | ${f0(x.netstat?.listenOverflows)} |`,
            ]
          : [],
      ),
      "",
      ...errorLine("nimbus", b.errorKinds),
      `Chart: [${b.chart ?? "(not saved)"}](${b.chart ?? ""}) (sampled every ${b.intervalMs} ms: a burst is over in well under a second).`,
      "",
    );
  }
  if (r.connections) {
    const c = r.connections;
    out.push(
      `## 2. ${c.connections.toLocaleString("en")} concurrent keep-alive connections`,
      "",
      `autocannon holds ${c.connections.toLocaleString("en")} connections for ${c.holdS} s (pipelining 1, request timeout 10 s) against one function, config \`${JSON.stringify(c.config)}\`. ${c.waves > 1 ? `The connections are opened over ${c.rampS} s in ${c.waves} groups of about ${f0(c.connections / c.waves)} (\`--ramp ${c.rampS}\`), as clients arriving over a moment; with \`--ramp 0\` all of them are opened in the same instant.` : "All of them are opened in the same instant (`--ramp 0`)."}`,
      "",
      "| target | connections | held | connections answered | all answered after | 2xx | req/s (whole window) | req/s (2nd half, median of 250 ms intervals) | p50 ms (2nd half) | p99 ms (2nd half) | p99 ms (whole window) | max ms | non-2xx | errors (timeouts) | instances reached | listen-queue overflows |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      `| **nimbus** | ${f0(c.connections)} | ${c.holdS} s | ${f0(c.answeredConnections)} | ${c.allAnsweredAtS === null ? "not all" : `${c.allAnsweredAtS.toFixed(2)} s`} | ${f0(c.ok)} | **${f0(c.rps)}** | **${f0(c.rpsSecondHalfMedian)}** | ${f2(c.latencySecondHalf.p50)} | **${f2(c.latencySecondHalf.p99)}** | ${f2(c.latency.p99)} | ${f2(c.latency.max)} | ${f0(c.non2xx)} | ${f0(c.errors)} (${f0(c.timeouts)}) | ${c.maxInstances} | ${f0(c.netstat?.listenOverflows)} |`,
      ...(c.bare
        ? [
            `| bare node:http | ${f0(c.connections)} | ${Math.round(c.bare.durationS)} s | ${f0(c.bare.answeredConnections)} | ${c.bare.allAnsweredAtS === null ? "not all" : `${c.bare.allAnsweredAtS.toFixed(2)} s`} | – | ${f0(c.bare.rps)} | ${f0(c.bare.rpsSecondHalfMedian)} | ${f2(c.bare.latencySecondHalf.p50)} | ${f2(c.bare.latencySecondHalf.p99)} | ${f2(c.bare.latency.p99)} | ${f2(c.bare.latency.max)} | ${f0(c.bare.non2xx)} | ${f0(c.bare.errors)} | – | ${f0(c.bare.netstat?.listenOverflows)} |`,
            "",
            `Second-half throughput nimbus ÷ bare at ${f0(c.connections)} connections: **${f2((c.rpsSecondHalfMedian ?? Number.NaN) / (c.bare.rpsSecondHalfMedian ?? Number.NaN))}**. With every connection keeping one request in flight, latency ≈ connections ÷ throughput (Little's law): at ${f0(c.rpsSecondHalfMedian)} req/s that is ${f0((c.connections / (c.rpsSecondHalfMedian ?? Number.NaN)) * 1000)} ms for every request, whatever the platform does. Listen-queue overflows: connection attempts the server's accept queue (backlog 511, Node's default; the kernel allows up to net.core.somaxconn) had no room for; each such client sends its SYN again after 1 s, then 3 s, 7 s, 15 s, so a request on a connection that needs the fourth try passes autocannon's 10 s timeout (kernel counter, machine-wide). Opened all in the same instant (\`--ramp 0\`), 10,000 connections overflow it by thousands, against bare node:http as much as against Nimbus.`,
          ]
        : []),
      "",
      ...errorLine("nimbus", c.errorKinds),
      ...errorLine("bare", c.bare?.errorKinds),
      `Chart: [${c.chart ?? "(not saved)"}](${c.chart ?? ""}).`,
      "",
    );
  }
  if (r.mixed) {
    const m = r.mixed;
    out.push(
      `## 3. ${m.functions} functions under mixed load vs bare node:http`,
      "",
      `${m.functions} functions (config \`${JSON.stringify(m.config)}\`, deployed in ${m.deploySeconds.toFixed(1)} s, all at zero instances when the load starts). autocannon, ${m.connections} connections, ${m.durationS} s per target, cycles over one request list of ${MIXED_LIST_LENGTH.toLocaleString("en")} URLs: ${m.hotFunctions} hot functions share ${((1 - m.coldShare) * 100).toFixed(0)} % of the requests, the other ${m.functions - m.hotFunctions} get one entry each (${(m.coldShare * 100).toFixed(0)} %); each connection starts at its own offset. The bare server gets the same list (it answers every path with the same bytes) just before Nimbus; Nimbus runs it twice: from zero instances, then again once every function has an instance.`,
      "",
      "| run | 2xx | req/s (whole window) | req/s (second half) | req/s ÷ bare | p50 ms | p99 ms | max ms | non-2xx | errors | instances at most | functions with an instance at the end |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      `| bare node:http | ${f0(m.bare.ok)} | ${f0(m.bare.rps)} | ${f0(m.bare.rpsSecondHalf)} | – | ${f2(m.bare.latency.p50)} | ${f2(m.bare.latency.p99)} | ${f2(m.bare.latency.max)} | ${f0(m.bare.non2xx)} | ${f0(m.bare.errors)} | – | – |`,
      `| **nimbus, from zero** | ${f0(m.nimbus.ok)} | ${f0(m.nimbus.rps)} | ${f0(m.nimbus.rpsSecondHalf)} | **${f2(m.ratio)}** (second half ${f2(m.ratioSecondHalf)}) | ${f2(m.nimbus.latency.p50)} | ${f2(m.nimbus.latency.p99)} | ${f2(m.nimbus.latency.max)} | ${f0(m.nimbus.non2xx)} | ${f0(m.nimbus.errors)} | ${m.maxInstances} | ${m.functionsWithInstances} of ${m.functions} |`,
      ...(m.nimbusWarm
        ? [
            `| **nimbus, warm** (right after; each function without an instance called once; all had one ${m.allStartedAfterS === null ? "— not within 30 s" : `${m.allStartedAfterS.toFixed(1)} s after the first run`}) | ${f0(m.nimbusWarm.ok)} | ${f0(m.nimbusWarm.rps)} | ${f0(m.nimbusWarm.rpsSecondHalf)} | **${f2(m.ratioWarm)}** | ${f2(m.nimbusWarm.latency.p50)} | ${f2(m.nimbusWarm.latency.p99)} | ${f2(m.nimbusWarm.latency.max)} | ${f0(m.nimbusWarm.non2xx)} | ${f0(m.nimbusWarm.errors)} | ${m.instancesWarm.reduce((x, s) => Math.max(x, s.instances), 0)} | – |`,
          ]
        : []),
      "",
      ...errorLine("nimbus from zero", m.nimbus.errorKinds),
      ...errorLine("nimbus warm", m.nimbusWarm?.errorKinds),
      ...errorLine("bare", m.bare.errorKinds),
      `Chart: [${m.chart ?? "(not saved)"}](${m.chart ?? ""}) (requests/s on a logarithmic axis: the runs differ by orders of magnitude). Instances are the started instances of all ${m.functions} functions (\`GET /api/v1/functions\` counts no \`starting\` ones).`,
      "",
    );
  }
  for (const f of r.failed) out.push(`**${f.scenario} failed**: ${f.reason}`, "");
  const notes = limits(r);
  if (notes.length) out.push("## What limited these figures (from the samples above)", "", ...notes, "");
  out.push(
    "## How to read these figures",
    "",
    "- Latencies are client-side, from each response at microsecond resolution; the charts' p50/p99 are those of the responses that arrived in each sampling interval (250 ms; 50 ms for the burst), with a logarithmic axis. Errors include connection errors and timeouts; non-2xx are counted separately; both must be 0.",
    "- Instance counts come from polling the control API (`GET /api/v1/functions/<name>`) from the load generator; under full load a poll waits behind the requests, so some intervals have no sample.",
    "- Two cores, shared with other sessions: the targets and all their instances share core 0, autocannon (one event loop) runs on the other. The bare rows show how far the load generator itself goes against the same traffic. The load average above says how busy the machine was; compare runs only when it is low, and prefer the ratios to the absolute figures.",
    "- Throughput and latency at N connections are tied: each connection has one request in flight, so latency ≈ N ÷ req/s. The second-half figures leave out the ramp (connections being accepted, instances starting).",
    "",
  );
  return `${out.join("\n")}\n`;
}

// ---------------------------------------------------------------- run

/** Runs the selected scenarios; writes the results unless `save` is false. */
export async function runScale(opts: Partial<ScaleOptions> = {}): Promise<ScaleResults> {
  const o: ScaleOptions = { ...DEFAULT_SCALE, ...opts };
  const started = performance.now();
  const load0 = loadavg()[0]!;
  const rev = revision();
  const pinning = pinSelf(o.pin);
  const targets: Target[] = [];
  const dataDirs: string[] = [];
  const failed: ScaleResults["failed"] = [];
  let sandbox: unknown;
  const results: Partial<Pick<ScaleResults, "burst" | "connections" | "mixed">> = {};
  const cleanup = async (): Promise<void> => {
    await Promise.all(targets.map((t) => t.stop()));
    for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  };
  const interrupt = (signal: NodeJS.Signals): void => {
    o.log(`bench scale: ${signal}, stopping the targets.`);
    void cleanup()
      .catch(() => {})
      .finally(() => process.exit(130));
  };
  process.once("SIGINT", interrupt);
  process.once("SIGTERM", interrupt);
  const startNimbus = async (): Promise<Target> => {
    const dataDir = mkdtempSync(join(tmpdir(), "nimbus-scale-"));
    dataDirs.push(dataDir);
    const t = await startTarget("nimbus", pinning.targets, {
      dataDir,
      prewarm: PREWARM,
      reapIntervalMs: 1000,
      noSandbox: !o.sandbox,
    });
    targets.push(t);
    sandbox ??= t.protections;
    return t;
  };
  const stopTarget = async (t: Target): Promise<void> => {
    await t.stop();
    targets.splice(targets.indexOf(t), 1);
  };

  try {
    o.log(
      `bench scale: pinning ${pinning.targets === null ? `off (${pinning.reason})` : `targets→core ${pinning.targets}, load generator→core ${pinning.loadgen}`}`,
    );
    for (const sc of o.scenarios) {
      o.log(`${sc}:`);
      let nimbus: Target | undefined;
      let bare: Target | undefined;
      const startBare = async (): Promise<Target> => {
        if (!bare) {
          bare = await startTarget("bare", pinning.targets);
          targets.push(bare);
        }
        return bare;
      };
      try {
        const n = await startNimbus();
        nimbus = n;
        if (sc === "burst") results.burst = await burst(n, startBare, o);
        else if (sc === "connections") results.connections = await connections(n, startBare, o);
        else results.mixed = await mixed(n, startBare, o);
        if (!n.alive()) throw new Error(`the Nimbus server exited:\n${n.stderrTail()}`);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        failed.push({ scenario: sc, reason });
        o.log(`  ${sc} failed: ${reason}`);
      } finally {
        // The closures above assign these; TypeScript cannot see that.
        const b = bare as Target | undefined;
        const n = nimbus as Target | undefined;
        if (b) await stopTarget(b);
        if (n) await stopTarget(n);
      }
    }
  } finally {
    await cleanup();
    agent.destroy();
    process.removeListener("SIGINT", interrupt);
    process.removeListener("SIGTERM", interrupt);
  }

  const date = new Date();
  const { log: _log, save: _save, command: _command, ...params } = o;
  const r: ScaleResults = {
    suite: "scale",
    date: date.toISOString(),
    command: o.command,
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? "unknown",
      node: process.version,
      kernel: release(),
    },
    pinning,
    sandbox,
    revision: rev,
    loadavg: { start: load0, end: loadavg()[0]! },
    params,
    ...results,
    failed,
    elapsedS: (performance.now() - started) / 1000,
  };
  const subtitle = `${date.toISOString().slice(0, 16)}Z · ${r.machine.cpus} cores (targets on one, autocannon on the other) · load avg ${r.loadavg.start.toFixed(1)} · hello.ts, 127.0.0.1`;
  const charts: { file: string; res: ScenarioResult }[] = [];
  for (const res of [r.burst, r.connections, r.mixed]) {
    if (!res) continue;
    res.chart = `scale-${res.scenario}.svg`;
    charts.push({ file: res.chart, res });
  }
  const md = scaleMarkdown(r);
  if (o.save) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const stamp = date.toISOString().slice(0, 16).replace(":", "");
    for (const c of charts) writeFileSync(join(RESULTS_DIR, c.file), chartFor(c.res, subtitle));
    const json = join(RESULTS_DIR, `scale-${stamp}Z.json`);
    writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
    writeFileSync(join(RESULTS_DIR, "latest-scale.md"), md);
    o.log(`wrote ${json}, bench/results/latest-scale.md and ${charts.map((c) => c.file).join(", ")}`);
  }
  return r;
}

const USAGE =
  "usage: npm run bench -- scale [--only burst,connections,mixed] [--burst n] [--connections n] [--hold s] [--ramp s] [--functions n] [--mixed-connections n] [--mixed-duration s] [--no-pin] [--no-sandbox] [--no-save]";

function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`--${name} must be a positive whole number, got ${v}.\n${USAGE}`);
  return n;
}

function nonNegative(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number ≥ 0, got ${v}.\n${USAGE}`);
  return n;
}

/** Parses the command line of the scale suite (the arguments after `scale`). */
export function parseScaleArgs(argv: string[]): Partial<ScaleOptions> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    allowNegative: true,
    options: {
      only: { type: "string" },
      burst: { type: "string" },
      connections: { type: "string" },
      hold: { type: "string" },
      ramp: { type: "string" },
      functions: { type: "string" },
      "mixed-connections": { type: "string" },
      "mixed-duration": { type: "string" },
      pin: { type: "boolean", default: true },
      sandbox: { type: "boolean", default: true },
      save: { type: "boolean", default: true },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const scenarios = (values.only ?? SCENARIOS.join(",")).split(",") as Scenario[];
  for (const s of scenarios)
    if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${JSON.stringify(s)}.\n${USAGE}`);
  const d = DEFAULT_SCALE;
  const functions = positiveInt("functions", values.functions, d.functions);
  return {
    scenarios,
    burst: positiveInt("burst", values.burst, d.burst),
    connections: positiveInt("connections", values.connections, d.connections),
    holdS: positiveInt("hold", values.hold, d.holdS),
    rampS: values.ramp === undefined ? d.rampS : nonNegative("ramp", values.ramp),
    functions,
    hotFunctions: Math.min(d.hotFunctions, functions),
    mixedConnections: positiveInt("mixed-connections", values["mixed-connections"], d.mixedConnections),
    mixedDurationS: positiveInt("mixed-duration", values["mixed-duration"], d.mixedDurationS),
    pin: values.pin,
    sandbox: values.sandbox,
    save: values.save,
  };
}

/** The whole suite from a command line: runs, prints the markdown, exits non-zero on failure. */
export async function scaleMain(argv: string[], command = "npm run bench -- scale"): Promise<void> {
  const opts = parseScaleArgs(argv);
  const full = argv.length ? `${command} ${argv.join(" ")}` : command;
  // Every scenario is bounded; this is the backstop for the whole run.
  const watchdog = setTimeout(() => {
    console.error("bench scale: still running after 8 min; stopping.");
    process.exit(2);
  }, 8 * 60_000);
  watchdog.unref();
  const r = await runScale({ ...opts, command: full });
  clearTimeout(watchdog);
  console.log(scaleMarkdown(r));
  const bad =
    r.failed.length > 0 ||
    [r.burst, r.connections, r.mixed].some((s) => s && s.errors + s.non2xx > 0) ||
    (r.mixed ? r.mixed.bare.errors + r.mixed.bare.non2xx > 0 : false);
  if (bad) process.exitCode = 1;
}

if (import.meta.main) {
  scaleMain(process.argv.slice(2), "npx node --no-node-snapshot bench/scale.ts").catch((err: unknown) => {
    console.error(`bench scale failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  });
}
