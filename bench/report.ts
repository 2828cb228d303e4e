/**
 * Turns a run's results into the markdown tables printed on the console and written to
 * `bench/results/latest-<suite>.md`, and checks them against the aims of issue 2.
 */
import type { ColdResult } from "./cold.ts";
import type { Pinning } from "./harness.ts";
import type { WarmRow, WarmSummary } from "./warm.ts";

/** The aims the numbers are held against (issue 2, "Shows it"). */
export const AIMS = {
  /** Cold start p50 with the pre-started pool, ms. */
  coldP50Ms: 10,
  /** Nimbus throughput / bare throughput, at least. */
  rpsRatio: 0.7,
  /** Nimbus p99 / bare p99, at most. */
  p99Ratio: 2,
} as const;

/** A series that could not be measured, and why. */
export interface Skipped {
  what: string;
  reason: string;
}

/** Everything one run produced. */
export interface RunResults {
  suite: string;
  date: string;
  command: string;
  machine: { cpus: number; model: string; node: string; kernel: string };
  pinning: Pinning;
  sandbox: unknown;
  params: Record<string, unknown>;
  /** The commit measured; `changed`: files under src/ that differed from it at the start. */
  revision: { commit: string; changed: string[]; changedDuringRun: boolean };
  /** Load average (1 min) at the start and the end: other sessions' work shows here. */
  loadavg: { start: number; end: number };
  cold: ColdResult[];
  /** Medians over rounds (the table). */
  warm: WarmSummary[];
  /** Every warm measurement. */
  warmRounds: WarmRow[];
  skipped: Skipped[];
  aims: AimCheck[];
  elapsedS: number;
}

/** One aim checked against one row. */
export interface AimCheck {
  aim: string;
  row: string;
  value: number;
  met: boolean;
}

const f = (n: number | undefined, digits = 2): string =>
  n === undefined || Number.isNaN(n) ? "–" : n.toFixed(digits);
const int = (n: number): string => Math.round(n).toLocaleString("en-US");

/** Checks every relevant row against the aims. */
export function checkAims(cold: ColdResult[], warm: WarmSummary[]): AimCheck[] {
  const out: AimCheck[] = [];
  for (const c of cold) {
    if (c.executor === "process" && c.prewarm === 0) continue; // reference only: no pool
    out.push({
      aim: `cold start p50 < ${AIMS.coldP50Ms} ms`,
      row: c.label,
      value: c.cold.p50,
      met: c.cold.p50 < AIMS.coldP50Ms,
    });
  }
  for (const w of warm) {
    if (w.target !== "nimbus") continue;
    const row = `${w.label}, ${w.connections} conn`;
    out.push({
      aim: `throughput ≥ ${AIMS.rpsRatio} × bare`,
      row,
      value: w.rpsRatio!,
      met: w.rpsRatio! >= AIMS.rpsRatio,
    });
    out.push({
      aim: `p99 ≤ ${AIMS.p99Ratio} × bare`,
      row,
      value: w.p99Ratio!,
      met: w.p99Ratio! <= AIMS.p99Ratio,
    });
  }
  return out;
}

function coldTable(cold: ColdResult[]): string[] {
  const lines = [
    "| series | samples | cold p50 ms | p90 ms | p99 ms | max ms | server-side p50 ms | warm request after it, p50 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const c of cold) {
    const n = c.cold.n < c.wanted ? `${c.cold.n} of ${c.wanted}` : String(c.cold.n);
    const notCold = c.notCold > 0 ? ` (${c.notCold} not cold, excluded)` : "";
    lines.push(
      `| ${c.label} | ${n}${notCold} | ${f(c.cold.p50)} | ${f(c.cold.p90)} | ${f(c.cold.p99)} | ${f(c.cold.max)} | ${f(c.serverCold?.p50)} | ${f(c.warmAfter.p50)} |`,
    );
  }
  return lines;
}

const rangeOf = (r: [number, number] | undefined): string => (r ? ` (${f(r[0])}–${f(r[1])})` : "");

function warmTable(warm: WarmSummary[]): string[] {
  const lines = [
    "| target | conn | req/s | p50 ms | p99 ms | max ms | req/s ÷ bare | p99 ÷ bare | p50 − bare ms | CPU µs/req server + instances | others on target core | errors/non-2xx |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const w of warm) {
    const cpu = w.cpuUsPerReq
      ? w.target === "bare"
        ? f(w.cpuUsPerReq.root, 0)
        : `${f(w.cpuUsPerReq.root, 0)} + ${f(w.cpuUsPerReq.descendants, 0)}`
      : "–";
    lines.push(
      `| ${w.label} | ${w.connections} | ${int(w.rps)} | ${f(w.p50, 3)} | ${f(w.p99, 3)} | ${f(w.max, 1)} | ${f(w.rpsRatio)}${rangeOf(w.rpsRatioRange)} | ${f(w.p99Ratio)}${rangeOf(w.p99RatioRange)} | ${w.p50DeltaMs === undefined ? "–" : f(w.p50DeltaMs, 3)} | ${cpu} | ${w.othersOnTargetCorePct === undefined ? "–" : `${f(w.othersOnTargetCorePct, 0)} %`} | ${w.failures} |`,
    );
  }
  return lines;
}

/** The run as markdown. */
export function toMarkdown(r: RunResults): string {
  const out: string[] = [];
  out.push(`# Nimbus benchmark: ${r.suite}`, "");
  out.push(`Run ${r.date} with \`${r.command}\` (${f(r.elapsedS, 0)} s).`, "");
  const pin =
    r.pinning.targets === null
      ? `not pinned (${r.pinning.reason})`
      : `gateway + instances and the bare server on core ${r.pinning.targets}, load generator on core ${r.pinning.loadgen}`;
  const rev = r.revision;
  const revLine =
    `${rev.commit}${rev.changed.length ? ` with uncommitted changes to ${rev.changed.join(", ")}` : ""}` +
    (rev.changedDuringRun ? " (new commits landed during the run)" : "");
  out.push(
    `- Code: ${revLine}`,
    `- Machine: ${r.machine.cpus} × ${r.machine.model}, Linux ${r.machine.kernel}, Node ${r.machine.node}`,
    `- CPU pinning: ${pin}`,
    `- Sandbox: ${sandboxLine(r.sandbox)}`,
    `- Load average (1 min): ${f(r.loadavg.start)} at the start, ${f(r.loadavg.end)} at the end (2 cores; other sessions share this machine)`,
    `- Parameters: ${Object.entries(r.params)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(", ")}`,
    "",
  );
  if (r.cold.length > 0) {
    out.push("## Cold start (first request after scale to zero, client side, to the last byte)", "");
    out.push(...coldTable(r.cold), "");
    out.push(
      "Each sample: the function scaled to zero (idle window 100 ms, reaper every 50 ms), the pre-started pool refilled, a pause, then one request whose answer carried `x-nimbus-cold-start: 1`, timed by the client to the last byte. Server-side: the duration the invoker recorded for the same cold invocations (instance start + load + invoke; not the HTTP parsing before it). With fewer than 100 samples p99 is the maximum.",
      "",
    );
  }
  if (r.warm.length > 0) {
    const rounds = Math.max(...r.warm.map((w) => w.rounds));
    out.push(
      `## Warm requests (autocannon, 127.0.0.1, keep-alive, pipelining 1; median of ${rounds} round${rounds === 1 ? "" : "s"})`,
      "",
    );
    out.push(...warmTable(r.warm), "");
    out.push(
      "Latencies are taken from every response at microsecond resolution (autocannon's own histogram is whole milliseconds). Each Nimbus measurement is compared with the bare measurement at the same connection count taken just before it, in the same round; the ratios are the median over rounds, with their range in brackets. CPU µs/req: CPU time (user + system, from /proc in 10 ms ticks) the server process and, after the +, its instances spent per response during the measured window; when the target core is saturated, throughput ≈ 1 s ÷ this. Others on target core: the share of the target core used by processes other than the target during the window.",
      "",
    );
  }
  if (r.aims.length > 0) {
    out.push("## Aims (issue 2)", "", "| aim | row | measured | met |", "| --- | --- | ---: | --- |");
    for (const a of r.aims) out.push(`| ${a.aim} | ${a.row} | ${f(a.value)} | ${a.met ? "yes" : "**no**"} |`);
    out.push("");
  }
  if (r.skipped.length > 0) {
    out.push("## Not measured", "");
    for (const s of r.skipped) out.push(`- ${s.what}: ${s.reason}`);
    out.push("");
  }
  return out.join("\n");
}

function sandboxLine(s: unknown): string {
  const p = s as { bwrap?: boolean; cgroups?: string | null; off?: string[] } | undefined;
  if (!p) return "unknown";
  const on = [p.bwrap ? "bubblewrap" : null, p.cgroups ? `cgroups ${p.cgroups}` : null]
    .filter(Boolean)
    .join(" + ");
  const off = p.off && p.off.length > 0 ? `; off: ${p.off.join("; ")}` : "";
  return `${on || "none"}${off}`;
}
