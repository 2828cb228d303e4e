/**
 * `npm run bench -- startup [--samples n] [--no-save]`: where a fresh runtime's start-up time
 * goes (issue 8: a fresh runtime, empty pool, starts in ≤ 60 ms p50).
 *
 * Times, from spawn to the first byte on fd 3 (the runtime's READY frame) or to exit:
 * Node itself (`node -e 0`), bubblewrap alone (`bwrap … true`), Node inside bubblewrap, and
 * the runtime shim to READY with and without bubblewrap, with the same flags and the same
 * bwrap arguments (`bwrapArgs` from src/executors/process/sandbox.ts) as the process
 * executor. Cgroup placement and the spawner hop are not included (the cold-start suite
 * measures the whole path).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { buildSync } from "esbuild";
import { bwrapArgs, INSIDE } from "../src/executors/process/sandbox.ts";
import { RESULTS_DIR, ROOT, summarize } from "./harness.ts";

function timeTo(cmd: string, args: string[], until: "exit" | "ready"): Promise<number> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const c = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe", "pipe"] });
    let err = "";
    c.stderr!.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    const guard = setTimeout(() => c.kill("SIGKILL"), 30_000);
    if (until === "ready") {
      (c.stdio[3] as Socket).once("data", () => {
        const ms = performance.now() - t0;
        c.kill("SIGKILL");
        res(ms);
      });
    }
    c.on("exit", (code) => {
      clearTimeout(guard);
      if (until === "exit" && code === 0) res(performance.now() - t0);
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
  const dir = mkdtempSync(join(tmpdir(), "nimbus-startup-"));
  const runtimeDir = join(dir, "runtime");
  const codeDir = join(dir, "code");
  mkdirSync(codeDir, { recursive: true });
  // The same build as the process executor's buildRuntime().
  buildSync({
    entryPoints: [join(ROOT, "src/runtime/shim.ts")],
    outfile: join(runtimeDir, "shim.mjs"),
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node24",
    logLevel: "silent",
  });
  const node = process.execPath;
  const flags = [
    "--max-old-space-size=80",
    "--enable-source-maps",
    "--disable-warning=ExperimentalWarning",
    "--stack-trace-limit=30",
  ];
  const bw = (inner: string[]): string[] =>
    bwrapArgs({ nodeDir: dirname(node), runtimeDir, codeDir, tmpMB: 64 }, inner);
  const cases: [string, () => Promise<number>][] = [
    ["node -e 0 (Node's own start-up and exit)", () => timeTo(node, ["-e", "0"], "exit")],
    [
      "bwrap … node --version (the sandbox, and an exec that does not start V8)",
      () => timeTo("bwrap", bw([INSIDE.node, "--version"]), "exit"),
    ],
    ["bwrap … node -e 0", () => timeTo("bwrap", bw([INSIDE.node, "-e", "0"]), "exit")],
    [
      "node shim.mjs → READY (no sandbox)",
      () => timeTo(node, [...flags, join(runtimeDir, "shim.mjs")], "ready"),
    ],
    [
      "node shim.mjs → READY, without --enable-source-maps",
      () =>
        timeTo(
          node,
          [...flags.filter((f) => f !== "--enable-source-maps"), join(runtimeDir, "shim.mjs")],
          "ready",
        ),
    ],
    [
      "bwrap … node shim.mjs → READY (as the executor starts it, minus cgroups)",
      () => timeTo("bwrap", bw([INSIDE.node, ...flags, `${INSIDE.runtime}/shim.mjs`]), "ready"),
    ],
  ];
  const load0 = loadavg()[0]!;
  const rows: string[] = [];
  try {
    // Interleaved rounds, so a burst of other work on the machine hits every case alike.
    const times = cases.map(() => [] as number[]);
    for (let s = 0; s < samples; s++) {
      for (let c = 0; c < cases.length; c++) times[c]!.push(await cases[c]![1]());
    }
    for (let c = 0; c < cases.length; c++) {
      const sum = summarize(times[c]!);
      rows.push(
        `| ${cases[c]![0]} | ${sum.p50.toFixed(1)} ms | ${sum.min.toFixed(1)} ms | ${sum.p90.toFixed(1)} ms |`,
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
    `Run ${date.toISOString()} with \`npm run bench -- startup${argv.length ? ` ${argv.join(" ")}` : ""}\`, ${samples} samples per row, interleaved (load average ${load0.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end: a shared, loaded machine, so compare rows with each other; absolute figures are indicative).`,
    "",
    "| what starts | p50 | min | p90 |",
    "| --- | ---: | ---: | ---: |",
    ...rows,
    "",
  ].join("\n");
  process.stdout.write(`${text}\n`);
  if (!argv.includes("--no-save")) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, "latest-startup.md"), text);
  }
}
