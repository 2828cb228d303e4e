/**
 * `npm run bench -- apis [--n 20000] [--no-save]`: µs per Web API call (`new URL()`,
 * `new Request()`, `new Response()`, `headers.get()` …) inside a deployed function, on both
 * executors (bench/functions/apis.ts, the same file on each). Results:
 * `bench/results/latest-apis.md`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deploy, RESULTS_DIR, ROOT, startTarget } from "./harness.ts";

const FN = join(ROOT, "bench/functions/apis.ts");

/** µs per call, per API, per executor. */
export type ApisResult = Record<"process" | "isolate", Record<string, number>>;

/** Deploys the timing function on both executors and asks each for `n` calls per API. */
export async function runApis(n: number): Promise<ApisResult> {
  const dataDir = mkdtempSync(join(tmpdir(), "nimbus-bench-apis-"));
  const target = await startTarget("nimbus", null, { dataDir, prewarm: 1, reapIntervalMs: 1000 });
  try {
    const out = {} as ApisResult;
    for (const executor of ["process", "isolate"] as const) {
      const name = `apis-${executor}`;
      await deploy(target, name, FN, { executor, timeout: "120s", memory: 256 });
      // The first call starts the instance; the second measures on a warm one.
      // (retried while it answers 429: on a loaded machine the instance may still be starting)
      for (let i = 0; i < 10; i++) {
        const first = await fetch(`${target.url}/fn/${name}?n=100`);
        await first.text();
        if (first.status !== 429) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      const r = await fetch(`${target.url}/fn/${name}?n=${n}`);
      if (r.status !== 200) throw new Error(`${name} answered ${r.status}: ${await r.text()}`);
      const body = (await r.json()) as Record<string, number>;
      delete body.n;
      out[executor] = body;
    }
    return out;
  } finally {
    await target.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The result as a Markdown table. */
export function apisMarkdown(r: ApisResult, n: number): string {
  const lines = [
    `µs per call, mean of ${n} calls inside one warm instance (lower is better).`,
    "",
    "| API | process (Node 24) | isolate |",
    "| --- | ---: | ---: |",
  ];
  for (const k of Object.keys(r.process)) {
    lines.push(`| \`${k}\` | ${r.process[k]!.toFixed(2)} | ${(r.isolate[k] ?? Number.NaN).toFixed(2)} |`);
  }
  return lines.join("\n");
}

/** Entry of `npm run bench -- apis`. */
export async function apisMain(argv: string[]): Promise<void> {
  const i = argv.indexOf("--n");
  const n = i >= 0 ? Number(argv[i + 1]) : 20_000;
  if (!Number.isInteger(n) || n < 100 || n > 200_000)
    throw new Error(`--n must be a whole number from 100 to 200000.`);
  const r = await runApis(n);
  const md = apisMarkdown(r, n);
  console.log(md);
  if (!argv.includes("--no-save")) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(
      join(RESULTS_DIR, "latest-apis.md"),
      `# Web API calls\n\n\`npm run bench -- apis --n ${n}\`, ${new Date().toISOString()}\n\n${md}\n`,
    );
  }
}

if (import.meta.main) await apisMain(process.argv.slice(2));
