/**
 * `npm run bench -- profile`: where a warm request's microseconds go (issue 8, "measure first").
 *
 * Records V8 CPU profiles (`--cpu-prof`) of the gateway (the Nimbus server process), of the
 * process runtimes (the runtime shim) and of the isolate host while autocannon sends the hello
 * function warm load (10 connections, 10 s by default), plus a bare `node:http` server under
 * the same load for reference. Then it keeps only the samples taken inside each measured
 * window (V8's profile clock and `process.hrtime` are both CLOCK_MONOTONIC on Linux), sums
 * self time per function and per phase (the PHASES table below maps files and functions to
 * phases), divides by the 2xx responses of the window, and writes a short markdown summary to
 * `bench/results/`.
 *
 * The instances run WITHOUT the sandbox here (bubblewrap gives them a private /tmp and a
 * read-only view of everything else, so a profile written inside could not be read back):
 * the profiled code is the same, only the sandbox's system-call costs are missing. The code
 * inside V8 isolates (the prelude and the function) runs in isolates the host's profiler does
 * not sample; its CPU shows in the per-thread figures (isolated-vm runs isolates on its own
 * threads), not in the phase table.
 *
 * Options: `--duration s` (10), `--warmup s` (3), `--connections n` (10), `--label name`
 * (results file `profile-<name>.md`; default a time stamp), `--keep-profiles` (copy the
 * .cpuprofile files to bench/results/profiles/, which git ignores), `--no-save`, `--no-pin`.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  agent,
  type LoadResult,
  load,
  pinSelf,
  RESULTS_DIR,
  sleep,
  startTarget,
  type Target,
} from "./harness.ts";
import { deployVariant } from "./warm.ts";

// ---------------------------------------------------------------- the .cpuprofile format

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

/** What V8's `--cpu-prof` writes (the parts read here). */
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

// ---------------------------------------------------------------- phases

/**
 * Phases of a request, in the order the rules are tried: the first rule whose file pattern
 * (`url`) and function pattern (`fn`) both match gives the phase of a function's self time.
 * Bundled programs (the runtime shim `shim.mjs`, the isolate host `host.mjs`) keep function
 * names but not file names, so their rules go by name.
 */
export const PHASES: { phase: string; url?: RegExp; fn?: RegExp }[] = [
  { phase: "GC", fn: /^\(garbage collector\)$/ },
  // Instances still starting inside the window (module loading, new isolates): not per request.
  {
    phase: "start-up (module loading, new isolates)",
    fn: /^(compileForInternalLoader|compileFunction|internalBinding|__require|newIsolate|handleLoad|requireBuiltin|loadESM|importModuleDynamically)$/,
  },
  // The SQLite store writes records on a worker thread: handing them over is recording.
  { phase: "recording", url: /^node:internal\/worker/, fn: /^postMessage$/ },
  { phase: "V8/native (program)", fn: /^\((program|root)\)$/ },
  // The gateway's responder writes the response; the rest of gateway.ts is routing.
  { phase: "response write", url: /src\/gateway\/gateway\.ts$/, fn: /^(head|chunk|end|error|sendError)$/ },
  { phase: "routing/resolve", url: /src\/(gateway\/gateway|invoker\/registry|api\/auth)\.ts$/ },
  { phase: "routing/resolve", url: /src\/invoker\/invoker\.ts$/, fn: /^(resolve|poolFor)$/ },
  { phase: "invoker pipeline", url: /src\/invoker\/(invoker|invocation|deadlines)\.ts$/ },
  { phase: "framing", url: /src\/invoker\/frame-guard\.ts$/ },
  { phase: "scheduling", url: /src\/scheduler\// },
  { phase: "recording", url: /src\/(invoker\/recorder|store|observability)\// },
  { phase: "recording", url: /src\/invoker\/recorder\.ts$/ },
  { phase: "recording", url: /^node:sqlite/ },
  { phase: "framing", url: /src\/runtime\/protocol\.ts$/ },
  { phase: "framing", url: /src\/executors\// },
  {
    phase: "framing",
    url: /(shim|host)\.mjs$/,
    fn: /^(encodeFrame|push|send|flush|FrameDecoder|FrameWriter)$/,
  },
  // Instance side: building the Web Request, reading the Response (undici's classes, web streams).
  {
    phase: "instance Request/Response",
    url: /shim\.mjs$/,
    fn: /^(handleInvoke|sendResponse|toLambdaEvent|fromLambdaResult|toBase64|fromBase64|lazyRequest|realOf)$/,
  },
  {
    phase: "isolate crossing + checks (host)",
    url: /host\.mjs$/,
    fn: /^(handleInvoke|flushInvokes|onEmit|validHead|end|settleCpu|cpuMsOf|forgetInvocation|ensureWatch|userText)$/,
  },
  { phase: "instance Request/Response", url: /^node:internal\/(deps\/undici|webstreams|url|blob)/ },
  { phase: "instance Request/Response", url: /^node:url$/ },
  { phase: "HTTP parse", url: /^node:(_http_server|_http_common|_http_incoming)$/ },
  { phase: "response write", url: /^node:_http_outgoing$/ },
  { phase: "socket I/O", url: /^node:(net|stream|internal\/stream_base_commons|internal\/streams\/)/ },
  {
    phase: "event loop, timers, promises",
    url: /^node:(events|async_hooks|internal\/(timers|process\/task_queues|async_hooks|async_local_storage))/,
  },
  { phase: "event loop, timers, promises", url: /^node:internal\/async_local_storage/ },
  { phase: "event loop, timers, promises", url: /^$/, fn: /^(processTicksAndRejections|runMicrotasks)$/ },
  { phase: "bench target (server.ts)", url: /bench\/server\.ts$/ },
  { phase: "function code", url: /\/fn\/|slots\// },
];

function phaseOf(f: CallFrame): string {
  for (const r of PHASES) {
    if (r.url && !r.url.test(f.url)) continue;
    if (r.fn && !r.fn.test(f.functionName)) continue;
    return r.phase;
  }
  if (f.url === "" && f.functionName !== "") return "V8/native (builtins)";
  if (f.url.startsWith("node:")) return "node (other)";
  if (/(shim|host)\.mjs$/.test(f.url)) return "runtime (other)";
  return "other";
}

function shortUrl(url: string): string {
  const i = url.indexOf("/src/");
  if (i >= 0) return url.slice(i + 1);
  if (url.startsWith("file://")) return url.slice(url.lastIndexOf("/") + 1);
  return url;
}

/** Self time (µs) per function and per phase over the samples inside [t0, t1) (µs, monotonic). */
export interface ProfileSummary {
  /** Non-idle sampled time in the window, µs. */
  busyUs: number;
  byPhase: Map<string, number>;
  byFunction: Map<string, { us: number; phase: string }>;
}

/** Sums the self time of `profiles` inside the window. */
export function summarizeProfiles(profiles: CpuProfile[], t0: number, t1: number): ProfileSummary {
  const byPhase = new Map<string, number>();
  const byFunction = new Map<string, { us: number; phase: string }>();
  let busyUs = 0;
  for (const p of profiles) {
    const nodes = new Map<number, CallFrame>();
    for (const n of p.nodes) nodes.set(n.id, n.callFrame);
    let t = p.startTime;
    const n = p.samples.length;
    for (let i = 0; i < n; i++) {
      t += p.timeDeltas[i] ?? 0;
      // A sample stands for the time until the next one.
      const dur = p.timeDeltas[i + 1] ?? 0;
      if (t < t0 || t >= t1 || dur <= 0) continue;
      const f = nodes.get(p.samples[i]!);
      if (!f || f.functionName === "(idle)") continue;
      busyUs += dur;
      const phase = phaseOf(f);
      byPhase.set(phase, (byPhase.get(phase) ?? 0) + dur);
      const key = `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
      const e = byFunction.get(key);
      if (e) e.us += dur;
      else byFunction.set(key, { us: dur, phase });
    }
  }
  return { busyUs, byPhase, byFunction };
}

// ---------------------------------------------------------------- per-thread CPU

const TICK_US = 10_000; // USER_HZ 100

/** CPU µs of each thread of `pid` (tid → µs), and the process's command line. */
function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) * TICK_US);
    }
  } catch {
    // gone
  }
  return out;
}

/** Pids of `root`'s descendants whose command line contains `part`. */
function descendantsMatching(root: number, part: string): number[] {
  const parent = new Map<number, number>();
  const cmd = new Map<number, string>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
      cmd.set(pid, readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " "));
    } catch {
      // gone
    }
  }
  const under = (pid: number): boolean => {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) if (p === root) return true;
    return false;
  };
  return [...cmd].filter(([pid, c]) => c.includes(part) && under(pid)).map(([pid]) => pid);
}

/** CPU split of a set of processes: main threads vs other threads, µs. */
function cpuSplit(pids: number[]): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const pid of pids) {
    for (const [tid, us] of threadCpu(pid)) {
      if (tid === pid) main += us;
      else other += us;
    }
  }
  return { main, other };
}

// ---------------------------------------------------------------- the run

interface Scenario {
  label: string;
  /** Which profile directories hold this scenario's instance side. */
  instanceDir: "process" | "isolate";
  url: string;
  t0: number;
  t1: number;
  load: LoadResult;
  /** /proc CPU of the instance-side processes in the window: main threads vs others, µs per request. */
  instanceThreads?: { main: number; other: number };
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

function readProfiles(dir: string): CpuProfile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as CpuProfile);
}

async function waitForProfiles(dir: string, maxMs = 8000): Promise<void> {
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline) {
    if (existsSync(dir) && readdirSync(dir).some((f) => f.endsWith(".cpuprofile"))) return;
    await sleep(100);
  }
}

function table(s: ProfileSummary, requests: number, top: number): string[] {
  const per = (us: number) => (us / requests).toFixed(1);
  const pct = (us: number) => `${((100 * us) / Math.max(1, s.busyUs)).toFixed(1)}%`;
  const lines = [
    `Sampled CPU (not idle): **${per(s.busyUs)} µs per request**.`,
    "",
    "| phase | µs per request | share |",
    "| --- | ---: | ---: |",
  ];
  for (const [phase, us] of [...s.byPhase].sort((a, b) => b[1] - a[1])) {
    lines.push(`| ${phase} | ${per(us)} | ${pct(us)} |`);
  }
  lines.push("", `Top ${top} functions by self time:`, "", "| function | phase | µs per request | share |");
  lines.push("| --- | --- | ---: | ---: |");
  for (const [name, e] of [...s.byFunction].sort((a, b) => b[1].us - a[1].us).slice(0, top)) {
    lines.push(`| \`${name.replaceAll("|", "\\|")}\` | ${e.phase} | ${per(e.us)} | ${pct(e.us)} |`);
  }
  return lines;
}

/** `npm run bench -- profile [options]`. */
export async function profileMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    allowNegative: true,
    options: {
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "3" },
      connections: { type: "string", default: "10" },
      label: { type: "string" },
      "keep-profiles": { type: "boolean", default: false },
      save: { type: "boolean", default: true },
      pin: { type: "boolean", default: true },
      isolate: { type: "boolean", default: true },
    },
  });
  const durationS = Number(values.duration);
  const warmupS = Number(values.warmup);
  const connections = Number(values.connections);
  for (const [k, v] of [
    ["duration", durationS],
    ["warmup", warmupS],
    ["connections", connections],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 600)
      throw new Error(`--${k} must be a whole number from 1 to 600`);
  }
  const log = (m: string): void => console.error(m);
  const pinning = pinSelf(values.pin);
  const profDir = mkdtempSync(join(tmpdir(), "nimbus-prof-"));
  // Instances run under an unprivileged uid of their own: their profiles' directory must be
  // reachable and writable for it (else they write none, silently).
  chmodSync(profDir, 0o755);
  mkdirSync(join(profDir, "process"), { mode: 0o777 });
  chmodSync(join(profDir, "process"), 0o777);
  const dataDir = mkdtempSync(join(tmpdir(), "nimbus-bench-"));
  // Read by the executors when they start instances (unsandboxed: see the header).
  process.env.NIMBUS_RUNTIME_FLAGS = `--cpu-prof --cpu-prof-dir=${join(profDir, "process")}`;
  process.env.NIMBUS_ISOLATE_HOST_FLAGS = `--cpu-prof --cpu-prof-dir=${join(profDir, "isolate")}`;
  const targets: Target[] = [];
  const scenarios: Scenario[] = [];
  let bare: { t0: number; t1: number; load: LoadResult } | undefined;
  const load0 = loadavg()[0]!;
  try {
    const nimbus = await startTarget(
      "nimbus",
      pinning.targets,
      { dataDir, prewarm: 2, reapIntervalMs: 1000, noSandbox: true },
      ["--cpu-prof", `--cpu-prof-dir=${join(profDir, "gateway")}`],
    );
    targets.push(nimbus);
    const variants = [
      { label: "process executor (defaults)", name: "hello", config: {}, dir: "process" as const },
      {
        label: "process executor (1 instance, concurrency 100)",
        name: "hello-c100",
        config: { concurrency: 100, maxInstances: 1 },
        dir: "process" as const,
      },
      ...(values.isolate
        ? [
            {
              label: "isolate executor (defaults)",
              name: "hello-isolate",
              config: { executor: "isolate" },
              dir: "isolate" as const,
            },
          ]
        : []),
    ];
    for (const v of variants) {
      const url = await deployVariant(nimbus, { ...v, connections: [connections] });
      log(`profile: ${v.label}: warm-up ${warmupS} s, then ${durationS} s at ${connections} connections`);
      await load(url, connections, warmupS, 0);
      const instancePids =
        v.dir === "isolate"
          ? descendantsMatching(nimbus.pid, "host.mjs")
          : descendantsMatching(nimbus.pid, "shim.mjs");
      const c0 = cpuSplit(instancePids);
      const t0 = nowUs();
      const r = await load(url, connections, durationS, 0, nimbus.pid, pinning.targets);
      const t1 = nowUs();
      const c1 = cpuSplit(instancePids);
      const n = Math.max(1, r.requests2xx);
      scenarios.push({
        label: v.label,
        instanceDir: v.dir,
        url,
        t0,
        t1,
        load: r,
        instanceThreads: { main: (c1.main - c0.main) / n, other: (c1.other - c0.other) / n },
      });
      log(`  ${r.rps.toFixed(0)} req/s, ${r.requests2xx} responses`);
    }
    await nimbus.stop();

    const b = await startTarget("bare", pinning.targets, undefined, [
      "--cpu-prof",
      `--cpu-prof-dir=${join(profDir, "bare")}`,
    ]);
    targets.push(b);
    log(`profile: bare node:http: warm-up ${warmupS} s, then ${durationS} s`);
    await load(`${b.url}/`, connections, warmupS, 0);
    const t0 = nowUs();
    const r = await load(`${b.url}/`, connections, durationS, 0, b.pid, pinning.targets);
    bare = { t0, t1: nowUs(), load: r };
    await b.stop();
  } finally {
    for (const t of targets) await t.stop();
    agent.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
  for (const d of ["gateway", "process", "isolate", "bare"]) await waitForProfiles(join(profDir, d));

  const gateway = readProfiles(join(profDir, "gateway"));
  const date = new Date();
  const md: string[] = [
    "# Nimbus benchmark: CPU profile of a warm request",
    "",
    `Run ${date.toISOString()} with \`npm run bench -- profile${argv.length ? ` ${argv.join(" ")}` : ""}\` (load average ${load0.toFixed(2)} at the start).`,
    "",
    `The hello function under autocannon (${connections} connections, ${durationS} s after a ${warmupS} s warm-up), the gateway and its instances pinned to ${pinning.targets === null ? "no core" : `core ${pinning.targets}`}. V8 CPU profiles (\`--cpu-prof\`, ~1 ms sampling) restricted to the measured window; self time per function, mapped to phases by the \`PHASES\` table in bench/profile.ts, divided by the 2xx responses of the window. **Indicative figures**: measured on a shared 2-core machine loaded by other work; compare rows within one run. Instances run without bubblewrap here so that their profiles can be read back (same code, minus the sandbox's system-call costs).`,
    "",
  ];
  if (bare) {
    const s = summarizeProfiles(readProfiles(join(profDir, "bare")), bare.t0, bare.t1);
    md.push(
      `## bare node:http (reference): ${bare.load.rps.toFixed(0)} req/s`,
      "",
      ...table(s, Math.max(1, bare.load.requests2xx), 8),
      "",
    );
  }
  for (const sc of scenarios) {
    const n = Math.max(1, sc.load.requests2xx);
    const g = summarizeProfiles(gateway, sc.t0, sc.t1);
    const inst = summarizeProfiles(readProfiles(join(profDir, sc.instanceDir)), sc.t0, sc.t1);
    const ratio = bare ? ` (${(sc.load.rps / bare.load.rps).toFixed(2)}× bare)` : "";
    const cpu = sc.load.cpuUsPerReq;
    md.push(`## ${sc.label}: ${sc.load.rps.toFixed(0)} req/s${ratio}`, "");
    if (cpu) {
      md.push(
        `CPU from /proc per request: gateway ${cpu.root.toFixed(0)} µs, instances ${cpu.descendants.toFixed(0)} µs` +
          (sc.instanceThreads
            ? ` (instance main threads ${sc.instanceThreads.main.toFixed(0)} µs, other threads ${sc.instanceThreads.other.toFixed(0)} µs${sc.instanceDir === "isolate" ? ": isolated-vm runs the isolates' own code on its threads, which the host's profile does not sample" : ""})`
            : "") +
          ".",
        "",
      );
    }
    md.push("### gateway (its main thread and its SQLite writer thread)", "", ...table(g, n, 15), "");
    md.push(
      `### ${sc.instanceDir === "isolate" ? "isolate host (main thread)" : "process runtimes (shim), all instances"}`,
      "",
      ...table(inst, n, 12),
      "",
    );
  }
  const text = `${md.join("\n")}\n`;
  process.stdout.write(text);
  if (values.save) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const name = values.label ?? date.toISOString().slice(0, 16).replace(":", "");
    writeFileSync(join(RESULTS_DIR, `profile-${name}.md`), text);
    writeFileSync(join(RESULTS_DIR, "latest-profile.md"), text);
    log(`wrote bench/results/profile-${name}.md and latest-profile.md`);
  }
  if (values["keep-profiles"]) {
    const out = join(RESULTS_DIR, "profiles");
    for (const d of ["gateway", "process", "isolate", "bare"]) {
      const dir = join(profDir, d);
      if (!existsSync(dir)) continue;
      mkdirSync(join(out, d), { recursive: true });
      for (const f of readdirSync(dir)) copyFileSync(join(dir, f), join(out, d, f));
    }
    log(`kept the profiles in ${out} (git ignores them)`);
  }
  rmSync(profDir, { recursive: true, force: true });
}
