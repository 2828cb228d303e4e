/**
 * `npm run bench -- startup [--samples n] [--baseline <git ref>] [--no-save]`: where a fresh
 * runtime's start-up time goes (issue 8: a fresh runtime, empty pool, starts in ≤ 60 ms p50).
 *
 * Times, from spawn: Node itself (`node -e 0`, to exit), Node inside bubblewrap, the runtime
 * shim to its first byte on fd 3 (READY), and the shim to the end of its first response
 * (READY, then LOAD of the hello function, then one INVOKE, as the process executor drives a
 * runtime spawned for a waiting request): the figure a caller of a cold function sees on top
 * of the gateway. Same flags and bwrap arguments (`bwrapArgs` from
 * src/executors/process/sandbox.ts) as the process executor. `--baseline <ref>` adds the same
 * rows for the shim of another commit (built from `git archive <ref> src/runtime`), so a
 * change is compared in one interleaved run. Cgroup placement and the spawner hop are not
 * included (the cold-start suite measures the whole path).
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { bundle } from "../src/build/bundle.ts";
import { buildRuntime } from "../src/executors/process/executor.ts";
import { bwrapArgs, INSIDE } from "../src/executors/process/sandbox.ts";
import { FrameDecoder, FrameWriter, type InvokeMeta, type LoadMeta, T } from "../src/runtime/protocol.ts";
import { HELLO_FN, RESULTS_DIR, ROOT, summarize } from "./harness.ts";

/**
 * The egress proxy's control socket as the executor passes it (the shim installs its egress
 * patch with it; nothing here connects, so it need not exist).
 */
const CTL = `${INSIDE.egress}/ctl.sock`;

/** How far a timed start goes: the process's exit, READY, or the end of a first response. */
type Until = "exit" | "ready" | "response";

/** One timed start: wall-clock ms, and the CPU ms the process had used by then (if read). */
interface Sample {
  ms: number;
  cpuMs?: number;
}

/**
 * CPU time a process has used so far, ms, over all its threads (the scheduler's ns figure in
 * /proc/<pid>/task/<tid>/schedstat): on a loaded machine it says more than wall time, which
 * mostly measures the wait for a core.
 */
function cpuMsOf(pid: number): number | undefined {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`))
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    return ns / 1e6;
  } catch {
    return undefined;
  }
}

function timeTo(cmd: string, args: string[], until: Until, codeFile = ""): Promise<Sample> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe", "pipe"] });
    let err = "";
    c.stderr!.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    const guard = setTimeout(() => c.kill("SIGKILL"), 30_000);
    const done = (): void => {
      const ms = performance.now() - t0;
      // Only meaningful when the spawned process is node itself (not bwrap's parent).
      const cpuMs = cmd === process.execPath ? cpuMsOf(c.pid!) : undefined;
      c.kill("SIGKILL");
      res({ ms, cpuMs });
    };
    if (until === "ready") (c.stdio[3] as Socket).once("data", done);
    if (until === "response") {
      const sock = c.stdio[3] as Socket;
      const writer = new FrameWriter(sock);
      const decoder = new FrameDecoder();
      let loading = false;
      sock.on("data", (chunk: Buffer) => {
        for (const f of decoder.push(chunk)) {
          if (f.type === T.READY && !loading) {
            loading = true;
            const load: LoadMeta = {
              file: codeFile,
              functionName: "hello",
              version: 1,
              memoryMB: 128,
              timeoutMs: 10_000,
              env: {},
            };
            writer.send(T.LOAD, 0, load);
          } else if (f.type === T.LOADED) {
            const meta: InvokeMeta = {
              invocationId: "first",
              method: "GET",
              url: "http://localhost/",
              headers: [["host", "localhost"]],
              deadline: Date.now() + 10_000,
              sourceIp: "127.0.0.1",
              trigger: "http",
            };
            writer.send(T.INVOKE, 1, meta);
          } else if (f.type === T.RESP_END) done();
          else if (f.type === T.INVOKE_ERROR)
            rej(new Error(`the first invocation failed: ${JSON.stringify(f.meta)}`));
        }
      });
    }
    c.on("exit", (code) => {
      clearTimeout(guard);
      if (until === "exit" && code === 0) res({ ms: performance.now() - t0 });
      else if (until === "exit" || code !== null) rej(new Error(`${cmd} exited ${code}: ${err}`));
    });
    c.on("error", rej);
  });
}

/** `npm run bench -- startup`. */
export async function startupMain(argv: string[]): Promise<void> {
  const i = argv.indexOf("--samples");
  const samples = i >= 0 ? Number(argv[i + 1]) : 20;
  if (!Number.isInteger(samples) || samples < 1 || samples > 500)
    throw new Error("--samples must be 1 to 500");
  const b = argv.indexOf("--baseline");
  const baseline = b >= 0 ? argv[b + 1] : undefined;
  if (b >= 0 && (!baseline || !/^[\w./~^-]+$/.test(baseline)))
    throw new Error("--baseline needs a git ref (a branch, tag or commit)");
  const dir = mkdtempSync(join(tmpdir(), "nimbus-startup-"));
  const codeDir = join(dir, "code");
  mkdirSync(codeDir, { recursive: true });
  const runtimeDir = buildRuntime(dir);
  const hello = await bundle(HELLO_FN);
  writeFileSync(join(codeDir, "index.mjs"), hello.code);
  let baseDir: string | undefined;
  let baseCommit = "";
  if (baseline) {
    const src = join(dir, "base-src");
    mkdirSync(src);
    baseCommit = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", baseline], {
      encoding: "utf8",
    }).trim();
    const tar = execFileSync("git", ["-C", ROOT, "archive", baseline, "src/runtime"]);
    execFileSync("tar", ["-x", "-C", src], { input: tar });
    baseDir = buildRuntime(join(dir, "base"), join(src, "src/runtime"));
  }
  const node = process.execPath;
  const flags = [
    "--max-old-space-size=80",
    "--enable-source-maps",
    "--disable-warning=ExperimentalWarning",
    "--stack-trace-limit=30",
  ];
  const bw = (rt: string, inner: string[]): string[] =>
    bwrapArgs({ nodeDir: dirname(node), runtimeDir: rt, codeDir, tmpMB: 64 }, inner);
  const onHost = join(codeDir, "index.mjs");
  const inside = `${INSIDE.code}/index.mjs`;
  const shimCases = (label: string, rt: string): [string, () => Promise<Sample>][] => [
    [
      `${label}: node shim.mjs → READY (no sandbox)`,
      () => timeTo(node, [...flags, join(rt, "shim.mjs"), CTL], "ready"),
    ],
    [
      `${label}: node shim.mjs → first response (READY, LOAD, INVOKE; no sandbox)`,
      () => timeTo(node, [...flags, join(rt, "shim.mjs"), CTL], "response", onHost),
    ],
    [
      `${label}: bwrap … node shim.mjs → READY (as the executor starts it, minus cgroups)`,
      () => timeTo("bwrap", bw(rt, [INSIDE.node, ...flags, `${INSIDE.runtime}/shim.mjs`, CTL]), "ready"),
    ],
    [
      `${label}: bwrap … node shim.mjs → first response`,
      () =>
        timeTo(
          "bwrap",
          bw(rt, [INSIDE.node, ...flags, `${INSIDE.runtime}/shim.mjs`, CTL]),
          "response",
          inside,
        ),
    ],
  ];
  const cases: [string, () => Promise<Sample>][] = [
    ["node -e 0 (Node's own start-up and exit)", () => timeTo(node, ["-e", "0"], "exit")],
    [
      'node -e <write a byte to fd 3> (Node\'s start-up until user code runs: the "READY" of an empty program)',
      () =>
        timeTo(node, ["-e", "require('node:fs').writeSync(3, 'x'); setTimeout(() => {}, 60000)"], "ready"),
    ],
    ["bwrap … node -e 0", () => timeTo("bwrap", bw(runtimeDir, [INSIDE.node, "-e", "0"]), "exit")],
    ...shimCases("this tree", runtimeDir),
    ...(baseDir ? shimCases(`baseline ${baseline} (${baseCommit})`, baseDir) : []),
  ];
  const load0 = loadavg()[0]!;
  const rows: string[] = [];
  try {
    // Interleaved rounds, so a burst of other work on the machine hits every case alike.
    const times = cases.map(() => [] as Sample[]);
    for (let s = 0; s < samples; s++) {
      for (let c = 0; c < cases.length; c++) times[c]!.push(await cases[c]![1]());
    }
    const nodeP50 = summarize(times[0]!.map((t) => t.ms)).p50;
    const nodeCpu = summarize(times[1]!.map((t) => t.cpuMs ?? 0)).p50;
    for (let c = 0; c < cases.length; c++) {
      const sum = summarize(times[c]!.map((t) => t.ms));
      const cpus = times[c]!.map((t) => t.cpuMs).filter((v) => v !== undefined);
      const cpu = cpus.length === times[c]!.length ? summarize(cpus).p50 : undefined;
      const cpuCells = cpu === undefined ? "– | –" : `${cpu.toFixed(1)} ms | ${(cpu / nodeCpu).toFixed(2)}`;
      rows.push(
        `| ${cases[c]![0]} | ${sum.p50.toFixed(1)} ms | ${(sum.p50 / nodeP50).toFixed(2)} | ${sum.min.toFixed(1)} ms | ${sum.p90.toFixed(1)} ms | ${cpuCells} |`,
      );
      console.error(rows.at(-1));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const date = new Date();
  const text = [
    "# Nimbus benchmark: fresh runtime start-up",
    "",
    `Run ${date.toISOString()} with \`npm run bench -- startup${argv.length ? ` ${argv.join(" ")}` : ""}\`, ${samples} samples per row, interleaved (load average ${load0.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end: a shared, loaded machine, so compare rows with each other; absolute figures are indicative). "÷ node -e 0" is the row's p50 over \`node -e 0\`'s p50 in the same run; the CPU columns (all threads of the node process, from /proc/<pid>/task/*/schedstat, read when the row's event arrives; only where node is the spawned process) say more than wall time on a loaded machine, where wall time is mostly the wait for a core; "CPU ÷ node's" divides by the CPU of Node's own start-up until user code runs.`,
    "",
    "| what starts | p50 | ÷ node -e 0 | min | p90 | CPU used by then, p50 | CPU ÷ node's |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
    "",
  ].join("\n");
  process.stdout.write(`${text}\n`);
  if (!argv.includes("--no-save")) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, "latest-startup.md"), text);
  }
}
