/**
 * `npm run bench [-- <suite>] [options]`: Nimbus's benchmarks (issue 2, "Shows it").
 *
 * Suites:
 * - `core` (default): `cold` then `warm`, in one run.
 * - `cold`: cold start p50/p99, first request after scale to zero with the pre-started
 *   pool; a fresh-spawn series (no pool) for reference.
 * - `apis`: µs per `new URL()` / `new Request()` / `new Response()` / `headers.get()` on both
 *   executors (bench/apis.ts).
 * - `warm`: requests/s and p50/p99 of a hello function against a bare `node:http` server,
 *   side by side, at 10 and 1 connections.
 *
 * The Nimbus server and the bare server each run in their own process (bench/server.ts),
 * pinned to core 0; this process (the load generator) pins itself to the last core. All
 * traffic goes to 127.0.0.1. Results: `bench/results/<suite>-<time>.json` and
 * `bench/results/latest-<suite>.md`.
 *
 * Options: `--duration <s>` (10) and `--warmup <s>` (3) per warm measurement, `--rounds <n>`
 * (3) of all warm measurements (the table shows the median);
 * `--samples <n>` (50) cold starts with the pool, `--fresh-samples <n>` (20) without;
 * `--connections 10,1`; `--isolate auto|on|off` (auto: isolate rows when an
 * `executor: "isolate"` deploy works, skipped with the reason otherwise; on: a failure
 * fails the run); `--no-pin`; `--no-sandbox` (instances without bubblewrap and cgroups, to
 * see what the sandbox costs); `--no-save`; `--quick` (short smoke run, not saved).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type ColdResult, measureCold } from "./cold.ts";
import { agent, pinSelf, RESULTS_DIR, ROOT, startTarget, type Target } from "./harness.ts";
import { checkAims, type RunResults, type Skipped, toMarkdown } from "./report.ts";
import { deployVariant, measureWarm, summarizeWarm, type WarmRow, type WarmVariant } from "./warm.ts";

const SUITES = ["core", "cold", "warm"] as const;
type Suite = (typeof SUITES)[number];

/** A whole run may not take longer than this (every loop inside is bounded too). */
const RUN_DEADLINE_MS = 20 * 60_000;

const USAGE = `usage: npm run bench -- [${SUITES.join("|")}|scale|density|profile|idle|startup|apis|events] [--duration s] [--warmup s] [--rounds n] [--samples n] [--fresh-samples n] [--connections 10,1] [--isolate auto|on|off] [--no-pin] [--no-sandbox] [--no-save] [--quick]`;

function positiveInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`--${name} must be a positive whole number, got ${v}.\n${USAGE}`);
  return n;
}

function parse() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    allowNegative: true,
    options: {
      duration: { type: "string" },
      warmup: { type: "string" },
      samples: { type: "string" },
      rounds: { type: "string" },
      "fresh-samples": { type: "string" },
      connections: { type: "string" },
      isolate: { type: "string", default: "auto" },
      pin: { type: "boolean", default: true },
      sandbox: { type: "boolean", default: true },
      save: { type: "boolean", default: true },
      quick: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const suite = (positionals[0] ?? "core") as Suite;
  if (!SUITES.includes(suite)) throw new Error(`unknown suite ${JSON.stringify(suite)}.\n${USAGE}`);
  const isolate = values.isolate;
  if (isolate !== "auto" && isolate !== "on" && isolate !== "off") {
    throw new Error(`--isolate must be auto, on or off, got ${isolate}.\n${USAGE}`);
  }
  const quick = values.quick;
  const connections = (values.connections ?? "10,1").split(",").map((c) => positiveInt("connections", c, 1));
  return {
    suite,
    durationS: positiveInt("duration", values.duration, quick ? 2 : 10),
    warmupS: positiveInt("warmup", values.warmup, quick ? 1 : 3),
    rounds: positiveInt("rounds", values.rounds, quick ? 1 : 3),
    samples: positiveInt("samples", values.samples, quick ? 5 : 50),
    freshSamples: positiveInt("fresh-samples", values["fresh-samples"], quick ? 3 : 20),
    connections,
    isolate: isolate as "auto" | "on" | "off",
    pin: values.pin,
    sandbox: values.sandbox,
    save: values.save && !quick,
    quick,
  };
}

/** The commit measured, and the files that differed from it (others edit the same checkout). */
function revision(): { commit: string; changed: string[] } {
  try {
    const git = (...a: string[]) => execFileSync("git", a, { cwd: ROOT, encoding: "utf8" });
    // Not trimmed: each porcelain line starts with a two-letter status and a space.
    const changed = git("status", "--porcelain", "--", "src", "package.json")
      .split("\n")
      .filter(Boolean)
      .map((l) => l.slice(3));
    return { commit: git("rev-parse", "--short", "HEAD").trim(), changed };
  } catch {
    return { commit: "unknown", changed: [] };
  }
}

async function main(): Promise<void> {
  // `npm run bench -- scale`: the scaling scenarios (issue 4) have their own runner.
  if (process.argv[2] === "scale") {
    const { scaleMain } = await import("./scale.ts");
    await scaleMain(process.argv.slice(3));
    return;
  }
  // `npm run bench -- apis`: µs per Web API call on both executors (issue 10).
  if (process.argv[2] === "apis") {
    const { apisMain } = await import("./apis.ts");
    await apisMain(process.argv.slice(3));
    return;
  }
  // `npm run bench -- events`: async events (issue 9).
  if (process.argv[2] === "events") {
    const { eventsMain } = await import("./events.ts");
    await eventsMain(process.argv.slice(3));
    return;
  }
  // `npm run bench -- density`: 1,000 warm isolate functions (issue 3); also run after core.
  if (process.argv[2] === "density") {
    const { densityMain } = await import("./density.ts");
    await densityMain(process.argv.slice(3));
    return;
  }
  // `npm run bench -- startup`: where a fresh runtime's start-up time goes (issue 8).
  if (process.argv[2] === "startup") {
    const { startupMain } = await import("./startup.ts");
    await startupMain(process.argv.slice(3));
    return;
  }
  // `npm run bench -- idle`: what 10,000 deployed, idle functions cost (issue 8).
  if (process.argv[2] === "idle") {
    const { idleMain } = await import("./idle.ts");
    await idleMain(process.argv.slice(3));
    return;
  }
  // `npm run bench -- profile`: CPU profiles of a warm request, by phase (issue 8).
  if (process.argv[2] === "profile") {
    const { profileMain } = await import("./profile.ts");
    await profileMain(process.argv.slice(3));
    return;
  }
  const started = performance.now();
  const load0 = loadavg()[0]!;
  const rev0 = revision();
  const opts = parse();
  const log = (m: string): void => console.error(m);
  const pinning = pinSelf(opts.pin);
  const targets: Target[] = [];
  const dataDirs: string[] = [];
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${RUN_DEADLINE_MS / 60_000} min; stopping.`);
    for (const t of targets) void t.stop();
    process.exit(2);
  }, RUN_DEADLINE_MS);
  watchdog.unref();
  // Interrupted: stop the targets (their instances go with them) and remove the data dirs.
  const interrupt = (signal: NodeJS.Signals): void => {
    console.error(`bench: ${signal}, stopping the targets.`);
    Promise.all(targets.map((t) => t.stop()))
      .catch(() => {})
      .finally(() => {
        for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
        process.exit(130);
      });
  };
  process.once("SIGINT", interrupt);
  process.once("SIGTERM", interrupt);

  const newDataDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), "nimbus-bench-"));
    dataDirs.push(d);
    return d;
  };
  const start = async (kind: "nimbus" | "bare", prewarm = 2): Promise<Target> => {
    const t = await startTarget(
      kind,
      pinning.targets,
      kind === "nimbus"
        ? { dataDir: newDataDir(), prewarm, reapIntervalMs: 50, noSandbox: !opts.sandbox }
        : undefined,
    );
    targets.push(t);
    return t;
  };

  const cold: ColdResult[] = [];
  const warmRounds: WarmRow[] = [];
  const skipped: Skipped[] = [];
  let sandbox: unknown;
  const doCold = opts.suite === "core" || opts.suite === "cold";
  const doWarm = opts.suite === "core" || opts.suite === "warm";
  // Isolate rows are attempted last on each server, so that a failing isolate executor
  // cannot spoil the process rows measured before it.
  const isolateFailed = (what: string, err: unknown): void => {
    const reason = err instanceof Error ? err.message.split("\n")[0]! : String(err);
    if (opts.isolate === "on") throw err;
    skipped.push({ what, reason: `executor "isolate" failed: ${reason}` });
    log(`  skipped ${what}: ${reason}`);
  };

  try {
    log(
      `bench ${opts.suite}: pinning ${pinning.targets === null ? `off (${pinning.reason})` : `targets→core ${pinning.targets}, load generator→core ${pinning.loadgen}`}`,
    );
    const nimbus = await start("nimbus");
    sandbox = nimbus.protections;

    if (doCold) {
      log("cold start, pre-started pool:");
      cold.push(
        await measureCold(
          nimbus,
          {
            label: "process, pre-started pool",
            name: "cold-process",
            executor: "process",
            samples: opts.samples,
            prewarm: 2,
            settleMs: 400,
            budgetMs: 180_000,
          },
          log,
        ),
      );
      if (opts.isolate !== "off") {
        log("cold start, isolate:");
        try {
          cold.push(
            await measureCold(
              nimbus,
              {
                label: "isolate",
                name: "cold-isolate",
                executor: "isolate",
                samples: opts.samples,
                prewarm: 0,
                settleMs: 100,
                budgetMs: 120_000,
              },
              log,
            ),
          );
        } catch (err) {
          isolateFailed("isolate cold start", err);
        }
      }
    }

    if (doWarm) {
      const bare = await start("bare");
      const variants: WarmVariant[] = [
        {
          label: "nimbus process (defaults: concurrency 1, ≤10 instances)",
          name: "hello",
          config: {},
          connections: opts.connections,
        },
        {
          label: "nimbus process (1 instance, concurrency 100)",
          name: "hello-one",
          config: { concurrency: 100, maxInstances: 1 },
          // At one connection it is the same as the defaults.
          connections: opts.connections.filter((c) => c > 1),
        },
      ];
      const ready: { v: WarmVariant; url: string }[] = [];
      for (const v of variants) ready.push({ v, url: await deployVariant(nimbus, v) });
      if (opts.isolate !== "off") {
        const v: WarmVariant = {
          label: "nimbus isolate (defaults)",
          name: "hello-isolate",
          config: { executor: "isolate" },
          connections: opts.connections,
        };
        try {
          ready.push({ v, url: await deployVariant(nimbus, v) });
        } catch (err) {
          isolateFailed("isolate warm requests", err);
        }
      }
      log(`warm requests (${opts.rounds} rounds, ${opts.durationS} s each after a warm-up):`);
      warmRounds.push(
        ...(await measureWarm(bare, nimbus, ready, { ...opts, targetCore: pinning.targets }, log)),
      );
      await bare.stop();
    }
    await nimbus.stop();

    if (doCold) {
      // A separate server without a pool: every cold start spawns a fresh runtime.
      log("cold start, fresh spawn (no pre-started pool), for reference:");
      const fresh = await start("nimbus", 0);
      cold.push(
        await measureCold(
          fresh,
          {
            label: "process, fresh spawn (prewarm 0)",
            name: "cold-fresh",
            executor: "process",
            samples: opts.freshSamples,
            prewarm: 0,
            settleMs: 100,
            budgetMs: 120_000,
          },
          log,
        ),
      );
      await fresh.stop();
    }
  } finally {
    for (const t of targets) await t.stop();
    agent.destroy();
    for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  }

  const date = new Date();
  const warm = summarizeWarm(warmRounds);
  const results: RunResults = {
    suite: opts.suite,
    date: date.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? "unknown",
      node: process.version,
      kernel: release(),
    },
    pinning,
    sandbox,
    params: {
      durationS: opts.durationS,
      warmupS: opts.warmupS,
      rounds: opts.rounds,
      samples: opts.samples,
      freshSamples: opts.freshSamples,
      connections: opts.connections,
      isolate: opts.isolate,
      sandbox: opts.sandbox,
    },
    loadavg: { start: load0, end: loadavg()[0]! },
    revision: { ...rev0, changedDuringRun: revision().commit !== rev0.commit },
    cold,
    warm,
    warmRounds,
    skipped,
    aims: checkAims(cold, warm),
    elapsedS: (performance.now() - started) / 1000,
  };
  const md = toMarkdown(results);
  console.log(md);
  if (opts.save) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const stamp = date.toISOString().slice(0, 16).replace(":", "");
    const json = join(RESULTS_DIR, `${opts.suite}-${stamp}Z.json`);
    writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(join(RESULTS_DIR, `latest-${opts.suite}.md`), md);
    log(`wrote ${json} and bench/results/latest-${opts.suite}.md`);
  }
  // The core suite also measures isolate density (1,000 warm functions), after the targets above are gone.
  if (opts.suite === "core" && opts.isolate !== "off") {
    const { runDensityModes, densityMarkdown, saveDensity } = await import("./density.ts");
    try {
      const d = await runDensityModes({ functions: 1000, log });
      console.log(densityMarkdown(d));
      if (opts.save) saveDensity(d, "npm run bench");
    } catch (err) {
      log(`density: not measured: ${(err as Error).message}`);
    }
  }
  clearTimeout(watchdog);
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
