/**
 * Runs the conformance suite on both executors: starts a server, deploys test/conformance/
 * function.ts once per executor, posts the upstream data files to each, and compares.
 *
 * `npm run conformance` prints the table; test/conformance.test.ts asserts on it.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "../../src/build/bundle.ts";
import type { ExecutorKind } from "../../src/executors/types.ts";
import { cleanup, ROOT, startTestServer } from "../helpers.ts";
import type { UrlData } from "./areas/url.ts";
import type { AreaResult } from "./harness.ts";

/** The data files, by the key the suite reads them under. */
const FILES: Record<keyof UrlData, string> = {
  urltestdata: "urltestdata.json",
  setters: "setters_tests.json",
  toascii: "toascii.json",
  idna: "IdnaTestV2.json",
};

/**
 * Where the upstream data files are looked for, first match wins: `NIMBUS_WPT_DATA`,
 * test/fixtures/wpt/data (a local copy, not committed), and shared/wpt beside the checkout.
 */
export function dataDirs(): string[] {
  return [
    process.env.NIMBUS_WPT_DATA,
    join(ROOT, "test/fixtures/wpt/data"),
    join(ROOT, "../shared/wpt"),
  ].filter((d): d is string => !!d);
}

/** Loads whichever data files are present; `missing` names the rest. */
export function loadData(): { data: UrlData; missing: string[]; dir?: string } {
  const dir = dataDirs().find((d) => existsSync(join(d, FILES.urltestdata)));
  const data: UrlData = {};
  const missing: string[] = [];
  for (const [key, file] of Object.entries(FILES) as [keyof UrlData, string][]) {
    const path = dir ? join(dir, file) : undefined;
    if (path && existsSync(path))
      (data as Record<string, unknown>)[key] = JSON.parse(readFileSync(path, "utf8"));
    else missing.push(file);
  }
  return { data, missing, dir };
}

/** One row of the table. */
export interface Row {
  area: string;
  total: number;
  process: number;
  isolate: number;
  /** Subtests passed on the process executor but failed on the isolate executor, with the isolate's error. */
  onlyProcess: [string, string][];
}

/** The results of both executors, per area. */
export interface Conformance {
  rows: Row[];
  missing: string[];
  raw: Record<ExecutorKind, Record<string, AreaResult>>;
}

/**
 * POSTs to a function, retrying (at most 10 times, after the Retry-After it gives) while it
 * answers 429: on a loaded machine the first request can find the new instance still starting.
 */
async function invokeWithRetry(url: string, body: string): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(url, { method: "POST", body });
    if (res.status !== 429 || attempt >= 10) return res;
    await res.arrayBuffer();
    const wait = Math.min(5, Number(res.headers.get("retry-after")) || 1);
    await new Promise((r) => setTimeout(r, wait * 1000));
  }
}

/** Deploys the suite on both executors and runs it. */
export async function runConformance(): Promise<Conformance> {
  const { data, missing } = loadData();
  const server = await startTestServer();
  const dir = mkdtempSync(join(tmpdir(), "nimbus-conformance-"));
  try {
    const payload = JSON.stringify(data);
    const raw = {} as Record<ExecutorKind, Record<string, AreaResult>>;
    for (const kind of ["process", "isolate"] as const) {
      const b = await bundle(join(ROOT, "test/conformance/function.ts"), { executor: kind });
      writeFileSync(join(dir, `${kind}.js`), b.code);
      const name = `wpt-${kind}`;
      const r = await server.api("POST", `/api/v1/functions/${name}/versions`, {
        code: b.code,
        sourceMap: b.sourceMap,
        config: { executor: kind, memory: 256, timeout: "120s" },
      });
      if (r.status !== 200) throw new Error(`deploying the suite on ${kind}: ${JSON.stringify(r.body)}`);
      const res = await invokeWithRetry(`${server.url}/fn/${name}`, payload);
      const text = await res.text();
      if (res.status !== 200)
        throw new Error(`the suite on ${kind} answered ${res.status}: ${text.slice(0, 2000)}`);
      raw[kind] = JSON.parse(text);
    }
    const rows: Row[] = Object.keys(raw.process).map((area) => {
      const p = raw.process[area]!;
      const i = raw.isolate[area] ?? { passed: 0, total: p.total, failed: [] };
      const failedOnProcess = new Set(p.failed.map(([n]) => n));
      return {
        area,
        total: p.total,
        process: p.passed,
        isolate: i.passed,
        onlyProcess: i.failed.filter(([n]) => !failedOnProcess.has(n)),
      };
    });
    return { rows, missing, raw };
  } finally {
    await server.stop();
    cleanup(server.dataDir);
    cleanup(dir);
  }
}

/** The table as Markdown: area, Node (process), isolate, isolate/Node ratio. */
export function formatTable(rows: Row[]): string {
  const lines = [
    "| area | subtests | process (Node) | isolate | isolate / Node |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    // Of the subtests Node passes, the share the isolate passes too.
    const ratio =
      r.process === 0 ? "—" : `${((100 * (r.process - r.onlyProcess.length)) / r.process).toFixed(1)}%`;
    lines.push(`| ${r.area} | ${r.total} | ${r.process} | ${r.isolate} | ${ratio} |`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const c = await runConformance();
  if (c.missing.length)
    console.log(
      `(data files not found, their subtests not run: ${c.missing.join(", ")}; looked in ${dataDirs().join(", ")})\n`,
    );
  console.log(formatTable(c.rows));
  for (const r of c.rows) {
    for (const [name, err] of r.onlyProcess)
      console.log(`isolate fails (Node passes) [${r.area}] ${name} — ${err}`);
  }
  if (process.argv.includes("--json")) console.log(JSON.stringify(c.raw, null, 1));
}
