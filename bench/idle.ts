/**
 * `npm run bench -- idle [--functions 10000] [--no-save]`: what deployed but idle functions
 * cost the platform (issue 8: 10,000 idle functions in < 300 MB, routed in O(1)).
 *
 * Starts a Nimbus target, deploys `--functions` tiny isolate functions through the control
 * API (8 deploys at once, within a time budget: fewer are deployed when it runs out, and the
 * result says so), never calls them, and reads the resident memory of the gateway process
 * and of the whole process tree before and after. Routing is timed at 100 functions and at
 * the end with requests for a version that does not exist (`/fn/<name>@99999`): the gateway
 * parses, authenticates and resolves the function and answers 404, so no instance starts
 * and the time is the routing path alone.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "../src/build/bundle.ts";
import { pool, treeRss } from "./density.ts";
import {
  agent,
  api,
  HELLO_FN,
  httpRequest,
  RESULTS_DIR,
  sleep,
  startTarget,
  summarize,
  type Target,
} from "./harness.ts";

/** What one run measured. */
export interface IdleResult {
  asked: number;
  deployed: number;
  deploySeconds: number;
  /** Gateway process RSS before / after, MiB. */
  gatewayBeforeMiB: number;
  gatewayAfterMiB: number;
  /** Whole process tree RSS before / after, MiB. */
  treeBeforeMiB: number;
  treeAfterMiB: number;
  /** Whole process tree PSS (shared pages divided among their users) before / after, MiB. */
  treePssBeforeMiB: number;
  treePssAfterMiB: number;
  /** Routing latency (client side, ms, p50 / p99) with 100 functions and with all deployed. */
  routeAt100: { p50: number; p99: number };
  routeAtAll: { p50: number; p99: number };
}

const rssMiB = (pid: number): number =>
  (Number(readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]) * 4096) / 1048576;

async function routeProbe(target: Target, names: string[], n = 2000): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = names[(i * 7919) % names.length]!;
    const r = await httpRequest(`${target.url}/fn/${name}@99999/`, { timeoutMs: 10_000 });
    if (r.status !== 404)
      throw new Error(`/fn/${name}@99999 answered ${r.status}, expected 404: ${r.body.slice(0, 200)}`);
    ms.push(r.ms);
  }
  const s = summarize(ms);
  return { p50: s.p50, p99: s.p99 };
}

/** Deploys up to `functions` idle functions within `budgetS` seconds and measures memory. */
export async function runIdle(opts: {
  functions: number;
  budgetS: number;
  log: (m: string) => void;
}): Promise<IdleResult> {
  const dataDir = mkdtempSync(join(tmpdir(), "nimbus-idle-"));
  const target = await startTarget("nimbus", null, { dataDir, prewarm: 2, reapIntervalMs: 1000 });
  try {
    const b = await bundle(HELLO_FN, { executor: "isolate" });
    const names = Array.from({ length: opts.functions }, (_, i) => `idle${String(i).padStart(5, "0")}`);
    const deployOne = async (name: string): Promise<void> => {
      await api(target, "POST", `/api/v1/functions/${name}/versions`, {
        code: b.code,
        config: { executor: "isolate" },
      });
    };
    // The first 100, then the baseline: the runtimes and the isolate host have started by then.
    await pool(names.slice(0, 100), 8, deployOne);
    await sleep(1500);
    const routeAt100 = await routeProbe(target, names.slice(0, 100));
    const gatewayBeforeMiB = rssMiB(target.pid);
    const before = treeRss(target.pid);
    const treeBeforeMiB = before.total / 1048576;
    const t0 = performance.now();
    const deadline = t0 + opts.budgetS * 1000;
    let deployed = 100;
    const rest = names.slice(100);
    let stop = false;
    await pool(rest, 8, async (name) => {
      if (stop || performance.now() > deadline) {
        stop = true;
        return;
      }
      await deployOne(name);
      deployed++;
      if (deployed % 1000 === 0)
        opts.log(`idle: ${deployed} deployed (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    });
    const deploySeconds = (performance.now() - t0) / 1000;
    await sleep(3000);
    const routeAtAll = await routeProbe(target, names.slice(0, deployed));
    const after = treeRss(target.pid);
    return {
      asked: opts.functions,
      deployed,
      deploySeconds,
      gatewayBeforeMiB,
      gatewayAfterMiB: rssMiB(target.pid),
      treeBeforeMiB,
      treeAfterMiB: after.total / 1048576,
      treePssBeforeMiB: before.pss / 1048576,
      treePssAfterMiB: after.pss / 1048576,
      routeAt100,
      routeAtAll,
    };
  } finally {
    await target.stop();
    agent.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The markdown section for a result. */
export function idleMarkdown(r: IdleResult): string {
  const grew = r.treeAfterMiB - r.treeBeforeMiB;
  return [
    "## Idle functions",
    "",
    `${r.deployed} of ${r.asked} tiny isolate functions deployed through the control API in ${r.deploySeconds.toFixed(0)} s (after the first 100), never called. Resident memory (RSS) read from /proc; routing timed client side with 2,000 sequential requests for a version that does not exist (404 after parse, auth and resolve; no instance starts).`,
    "",
    "| | with 100 functions | with all deployed | growth | per function |",
    "| --- | ---: | ---: | ---: | ---: |",
    `| gateway process RSS | ${r.gatewayBeforeMiB.toFixed(0)} MiB | ${r.gatewayAfterMiB.toFixed(0)} MiB | ${(r.gatewayAfterMiB - r.gatewayBeforeMiB).toFixed(0)} MiB | ${(((r.gatewayAfterMiB - r.gatewayBeforeMiB) * 1024) / Math.max(1, r.deployed - 100)).toFixed(1)} KiB |`,
    `| platform tree RSS | ${r.treeBeforeMiB.toFixed(0)} MiB | ${r.treeAfterMiB.toFixed(0)} MiB | ${grew.toFixed(0)} MiB | ${((grew * 1024) / Math.max(1, r.deployed - 100)).toFixed(1)} KiB |`,
    `| platform tree PSS | ${r.treePssBeforeMiB.toFixed(0)} MiB | ${r.treePssAfterMiB.toFixed(0)} MiB | ${(r.treePssAfterMiB - r.treePssBeforeMiB).toFixed(0)} MiB | ${(((r.treePssAfterMiB - r.treePssBeforeMiB) * 1024) / Math.max(1, r.deployed - 100)).toFixed(1)} KiB |`,
    `| routing, p50 (p99) | ${(r.routeAt100.p50 * 1000).toFixed(0)} µs (${(r.routeAt100.p99 * 1000).toFixed(0)}) | ${(r.routeAtAll.p50 * 1000).toFixed(0)} µs (${(r.routeAtAll.p99 * 1000).toFixed(0)}) | | |`,
    "",
    `Aim: < 300 MB for 10,000 idle functions (the platform tree, whose fixed part is the gateway, spawner, pre-started runtimes and isolate host): ${r.treeAfterMiB < 300 && r.deployed >= 10_000 ? "met" : `**not met** (${r.treeAfterMiB.toFixed(0)} MiB with ${r.deployed})`}; the growth per function is the state the platform holds for an idle function.`,
    "",
  ].join("\n");
}

/** `npm run bench -- idle [--functions n] [--budget s] [--no-save]`. */
export async function idleMain(argv: string[]): Promise<void> {
  const arg = (flag: string, dflt: number): number => {
    const i = argv.indexOf(flag);
    const v = i >= 0 ? Number(argv[i + 1]) : dflt;
    if (!Number.isInteger(v) || v < 100 || v > 100_000)
      throw new Error(`${flag} must be a whole number from 100 to 100000`);
    return v;
  };
  const r = await runIdle({
    functions: arg("--functions", 10_000),
    budgetS: arg("--budget", 900),
    log: (m) => console.error(m),
  });
  const date = new Date();
  const text = `# Nimbus benchmark: idle functions\n\nRun ${date.toISOString()} with \`npm run bench -- idle${argv.length ? ` ${argv.join(" ")}` : ""}\` (load average ${loadavg()[0]!.toFixed(2)}; a shared, loaded machine: figures are indicative).\n\n${idleMarkdown(r)}`;
  process.stdout.write(text);
  if (!argv.includes("--no-save")) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, "latest-idle.md"), text);
    writeFileSync(
      join(RESULTS_DIR, `idle-${date.toISOString().slice(0, 16).replace(":", "")}Z.json`),
      `${JSON.stringify({ date: date.toISOString(), loadavg: loadavg()[0], ...r }, null, 2)}\n`,
    );
  }
}
