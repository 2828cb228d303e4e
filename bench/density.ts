/**
 * Density: the memory the whole platform holds with N deployed isolate functions, each with
 * one warm isolate (issue 3's aim: 1,000 warm functions in under 1 GiB).
 *
 * Starts a Nimbus target, measures the resident memory of its process tree (gateway,
 * isolate host, spawner, pre-started runtimes), deploys N copies of the hello function with
 * `executor: "isolate"`, calls each once so it holds a warm isolate, checks that every one
 * still has its instance, and measures again.
 */

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "../src/build/bundle.ts";
import { api, HELLO_FN, httpRequest, RESULTS_DIR, ROOT, sleep, startTarget } from "./harness.ts";
import type { IsolateMemory } from "./isolate-memory.ts";

/** How functions are isolated from each other (the server's `--isolation`). */
export type Isolation = "isolate" | "context";

/** What one density run measured. */
export interface DensityResult {
  functions: number;
  /** The isolate executor's isolation (`--isolation`): an isolate per function, or a context in a shared isolate. */
  isolation: Isolation;
  /** Functions that held a started instance when memory was measured. */
  warm: number;
  deploySeconds: number;
  warmUpSeconds: number;
  /** Resident memory of the platform's process tree before deploying, MiB. */
  baselineMiB: number;
  /** Resident memory of the whole tree with every function warm, MiB. */
  totalMiB: number;
  /** Of which the isolate host process(es), MiB. */
  isolateHostMiB: number;
  /** (total − baseline) ÷ functions, KiB. */
  perFunctionKiB: number;
  /** Processes in the tree at the end (gateway, spawner, pre-started runtimes, isolate host, wrappers). */
  processes: number;
  /**
   * Proportional set size of the tree at the end, MiB: RSS counts the pages the processes
   * share (the node binary's code) once per process; PSS divides them among their users.
   */
  totalPssMiB?: number;
  /** Where one isolate's memory goes (bench/isolate-memory.ts), when measured. */
  breakdown?: IsolateMemory[];
}

const PAGE = 4096;

interface Proc {
  pid: number;
  ppid: number;
  rssBytes: number;
  cmd: string;
}

/** Proportional set size of a process (shared pages divided among their users), bytes; 0 if unreadable. */
function pssBytes(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function readProcs(): Map<number, Proc> {
  const out = new Map<number, Proc>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const rssPages = Number(readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      out.set(pid, { pid, ppid, rssBytes: rssPages * PAGE, cmd });
    } catch {
      // The process went away while we read it.
    }
  }
  return out;
}

/** Resident memory of `root` and its descendants, and of those whose command matches `part`. */
export function treeRss(
  root: number,
  part = "host.mjs",
): { total: number; matching: number; processes: number; pss: number } {
  const procs = readProcs();
  const children = new Map<number, number[]>();
  for (const p of procs.values()) {
    const list = children.get(p.ppid);
    if (list) list.push(p.pid);
    else children.set(p.ppid, [p.pid]);
  }
  let total = 0;
  let matching = 0;
  let processes = 0;
  let pss = 0;
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    const p = procs.get(pid);
    if (!p) continue;
    processes++;
    total += p.rssBytes;
    pss += pssBytes(pid);
    if (p.cmd.includes(part)) matching += p.rssBytes;
    stack.push(...(children.get(pid) ?? []));
  }
  return { total, matching, processes, pss };
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/** Measures density with `functions` isolate functions (bounded: every request has a timeout). */
export async function runDensity(opts: {
  functions: number;
  log: (m: string) => void;
  /** @default "isolate" */
  isolation?: Isolation;
}): Promise<DensityResult> {
  const isolation = opts.isolation ?? "isolate";
  const dataDir = mkdtempSync(join(tmpdir(), "nimbus-density-"));
  const target = await startTarget("nimbus", null, { dataDir, prewarm: 2, reapIntervalMs: 1000, isolation });
  try {
    await sleep(1500);
    const base = treeRss(target.pid);
    const b = await bundle(HELLO_FN, { executor: "isolate" });
    const names = Array.from({ length: opts.functions }, (_, i) => `d${String(i).padStart(4, "0")}`);
    const t0 = performance.now();
    await pool(names, 8, async (name) => {
      await api(target, "POST", `/api/v1/functions/${name}/versions`, {
        code: b.code,
        sourceMap: b.sourceMap,
        config: { executor: "isolate" },
      });
    });
    const deploySeconds = (performance.now() - t0) / 1000;
    opts.log(`density (${isolation}): ${opts.functions} functions deployed in ${deploySeconds.toFixed(1)} s`);
    const t1 = performance.now();
    await pool(names, 32, async (name) => {
      let r = await httpRequest(`${target.url}/fn/${name}`, { timeoutMs: 30_000 });
      // On a loaded machine a cold start can outlast the queue wait: honour Retry-After, a few times.
      for (let i = 0; i < 5 && r.status === 429; i++) {
        await sleep(1000 * (Number(r.headers["retry-after"]) || 1));
        r = await httpRequest(`${target.url}/fn/${name}`, { timeoutMs: 30_000 });
      }
      if (r.status !== 200) throw new Error(`/fn/${name} answered ${r.status}: ${r.body.slice(0, 200)}`);
    });
    const warmUpSeconds = (performance.now() - t1) / 1000;
    await sleep(1000);
    const list = await api<{ functions: { instances: number }[] }>(target, "GET", "/api/v1/functions");
    const warm = list.functions.filter((f) => f.instances > 0).length;
    const after = treeRss(target.pid);
    const mib = (n: number) => n / 1048576;
    return {
      functions: opts.functions,
      isolation,
      warm,
      deploySeconds,
      warmUpSeconds,
      baselineMiB: mib(base.total),
      totalMiB: mib(after.total),
      isolateHostMiB: mib(after.matching),
      perFunctionKiB: (after.total - base.total) / 1024 / opts.functions,
      processes: after.processes,
      totalPssMiB: mib(after.pss),
    };
  } finally {
    await target.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Runs bench/isolate-memory.ts once per stage, each in a fresh process. */
export function isolateBreakdown(count = 200): IsolateMemory[] {
  return ["bare", "runtime", "loaded", "context"].map(
    (stage) =>
      JSON.parse(
        execFileSync(
          process.execPath,
          [
            "--no-node-snapshot",
            "--disable-warning=ExperimentalWarning",
            join(ROOT, "bench/isolate-memory.ts"),
            stage,
            String(count),
          ],
          { encoding: "utf8", timeout: 300_000 },
        ),
      ) as IsolateMemory,
  );
}

const STAGE_LABEL: Record<string, string> = {
  bare: "bare isolated-vm isolate + context (no runtime)",
  runtime: "isolate from the runtime's snapshot + context (as the host creates them)",
  loaded: "… + bridge, hello module loaded, one request served (a warm function)",
  context: "one more context from the snapshot inside a shared isolate",
};

/** The markdown section for density results (one row per isolation mode measured). */
export function densityMarkdown(results: DensityResult | DensityResult[]): string {
  const rs = Array.isArray(results) ? results : [results];
  const r = rs[0]!;
  const row = (r: DensityResult): string => {
    const gib = r.totalMiB / 1024;
    return `| ${r.isolation ?? "isolate"} | ${r.functions} | ${r.warm} | ${r.baselineMiB.toFixed(0)} MiB | ${r.totalMiB.toFixed(0)} MiB | ${r.isolateHostMiB.toFixed(0)} MiB | ${r.perFunctionKiB.toFixed(0)} KiB | ${r.totalPssMiB ? `${r.totalPssMiB.toFixed(0)} MiB` : "–"} | ${r.processes} | ${r.deploySeconds.toFixed(1)} s | ${r.warmUpSeconds.toFixed(1)} s | ${r.functions < 1000 ? `not judged (the aim is for 1,000; at this growth: ~${((r.baselineMiB + (r.perFunctionKiB * 1000) / 1024) / 1024).toFixed(2)} GiB)` : gib < 1 ? "yes" : `**no** (${gib.toFixed(2)} GiB)`} |`;
  };
  return [
    "## Density (isolate executor)",
    "",
    `${r.functions} functions deployed with \`executor: "isolate"\` (the hello function), each called once so that it holds a warm instance; resident memory (RSS) of the whole platform's process tree read from /proc. One row per \`--isolation\`: \`isolate\` (an isolate per function, the default) and \`context\` (a context per function in isolates shared by up to 32 functions of the tenant).`,
    "",
    "| isolation | functions | warm at measurement | platform RSS before | platform RSS after | of which isolate host | per function | PSS after | processes | deploy | warm-up | aim: < 1 GiB |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ...rs.map(row),
    "",
    "The tree includes the gateway (Node, Fastify, SQLite), the spawner, the pre-started process runtimes (2) and the isolate host; the per-function figure is the growth divided by the functions. PSS (proportional set size) divides pages that processes share (the node binary's code) among them; RSS counts them once per process.",
    ...(r.breakdown
      ? [
          "",
          "### Where one isolate's memory goes",
          "",
          `Measured in a fresh process per row with ${r.breakdown[0]?.count ?? 0} isolates (bench/isolate-memory.ts), per isolate; V8 heap statistics from \`isolate.getHeapStatisticsSync()\`.`,
          "",
          "| stage | RSS | V8 heap used | V8 heap committed | of which code | startup snapshot |",
          "| --- | ---: | ---: | ---: | ---: | ---: |",
          ...r.breakdown.map(
            (b) =>
              `| ${STAGE_LABEL[b.stage] ?? b.stage} | ${b.rssKiB} KiB | ${b.usedHeapKiB} KiB | ${b.totalHeapKiB} KiB | ${b.executableKiB} KiB | ${b.snapshotKiB} KiB |`,
          ),
        ]
      : []),
    "",
  ].join("\n");
}

/** Writes `density-<time>.json` and `latest-density.md` into bench/results. */
export function saveDensity(r: DensityResult | DensityResult[], command: string): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const date = new Date();
  const stamp = date.toISOString().slice(0, 16).replace(":", "");
  writeFileSync(
    join(RESULTS_DIR, `density-${stamp}Z.json`),
    `${JSON.stringify({ date: date.toISOString(), command, loadavg: loadavg()[0], results: Array.isArray(r) ? r : [r] }, null, 2)}\n`,
  );
  const head = `# Nimbus benchmark: density\n\nRun ${date.toISOString()} with \`${command}\` (load average ${loadavg()[0]!.toFixed(2)}).\n\n`;
  writeFileSync(join(RESULTS_DIR, "latest-density.md"), head + densityMarkdown(r));
}

/** Density in each isolation mode, one after the other (each with a fresh platform). */
export async function runDensityModes(opts: {
  functions: number;
  log: (m: string) => void;
  modes?: Isolation[];
}): Promise<DensityResult[]> {
  const out: DensityResult[] = [];
  for (const isolation of opts.modes ?? (["isolate", "context"] as const)) {
    out.push(await runDensity({ functions: opts.functions, log: opts.log, isolation }));
  }
  return out;
}

/** `npm run bench -- density [--functions n] [--isolation isolate|context|both] [--no-breakdown] [--no-save]`. */
export async function densityMain(
  argv: string[],
  command = "npm run bench -- density",
): Promise<DensityResult[]> {
  const i = argv.indexOf("--functions");
  const functions = i >= 0 ? Number(argv[i + 1]) : 1000;
  if (!Number.isInteger(functions) || functions < 1 || functions > 5000) {
    throw new Error(`--functions must be a whole number from 1 to 5000, got ${argv[i + 1]}.`);
  }
  const j = argv.indexOf("--isolation");
  const mode = j >= 0 ? argv[j + 1] : "both";
  if (mode !== "both" && mode !== "isolate" && mode !== "context") {
    throw new Error(`--isolation must be isolate, context or both, got ${mode}.`);
  }
  const rs = await runDensityModes({
    functions,
    log: (m) => console.error(m),
    modes: mode === "both" ? undefined : [mode],
  });
  if (!argv.includes("--no-breakdown")) rs[0]!.breakdown = isolateBreakdown();
  process.stdout.write(`${densityMarkdown(rs)}\n`);
  if (!argv.includes("--no-save")) saveDensity(rs, argv.length ? `${command} ${argv.join(" ")}` : command);
  return rs;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await densityMain(process.argv.slice(2));
}
