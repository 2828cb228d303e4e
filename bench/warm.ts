/**
 * Warm throughput and latency: autocannon against Nimbus functions and against the bare
 * `node:http` server, alternated in one run, at each connection count, for several rounds.
 *
 * Each round measures bare, then every Nimbus variant, at one connection count, so every
 * Nimbus measurement has a bare measurement taken seconds before it. On a shared machine
 * other processes come and go: the summary takes the median over rounds, and keeps the range.
 */
import { deploy, HELLO_FN, httpRequest, type LoadResult, load, type Target } from "./harness.ts";

/** One Nimbus configuration under load. */
export interface WarmVariant {
  /** Row label. */
  label: string;
  /** Function name to deploy. */
  name: string;
  config: Record<string, unknown>;
  /** Connection counts this variant runs at (a subset of the suite's). */
  connections: number[];
}

/** One measurement. */
export interface WarmRow extends LoadResult {
  label: string;
  target: "bare" | "nimbus";
  round: number;
  config?: Record<string, unknown>;
  /** Nimbus rows: throughput / bare throughput (same round and connection count). */
  rpsRatio?: number;
  /** Nimbus rows: p99 / bare p99 (same round and connection count). */
  p99Ratio?: number;
  /** Nimbus rows: p50 − bare p50, ms. */
  p50DeltaMs?: number;
}

/** One line of the warm table: the median over rounds of one target at one connection count. */
export interface WarmSummary {
  label: string;
  target: "bare" | "nimbus";
  connections: number;
  rounds: number;
  rps: number;
  p50: number;
  p99: number;
  /** The largest latency seen in any round, ms. */
  max: number;
  rpsRatio?: number;
  rpsRatioRange?: [number, number];
  p99Ratio?: number;
  p99RatioRange?: [number, number];
  p50DeltaMs?: number;
  cpuUsPerReq?: { root: number; descendants: number };
  othersOnTargetCorePct?: number;
  /** Errors, timeouts and non-2xx answers over all rounds. */
  failures: number;
}

/** The warm suite's settings. */
export interface WarmOptions {
  connections: number[];
  durationS: number;
  /** Warm-up before each measurement of the first round, s (later rounds: 1 s). */
  warmupS: number;
  rounds: number;
  /** Core the targets are pinned to (for the interference figure), or null. */
  targetCore: number | null;
}

/** Deploys a variant and checks it answers; returns its URL. */
export async function deployVariant(nimbus: Target, v: WarmVariant): Promise<string> {
  await deploy(nimbus, v.name, HELLO_FN, v.config);
  const url = `${nimbus.url}/fn/${v.name}`;
  const r = await httpRequest(url);
  if (r.status !== 200 || r.body !== "Hello, world!\n") {
    throw new Error(`${url} answered ${r.status}: ${r.body.slice(0, 300)}`);
  }
  return url;
}

/** Runs every round; returns each measurement. */
export async function measureWarm(
  bare: Target,
  nimbus: Target,
  variants: { v: WarmVariant; url: string }[],
  o: WarmOptions,
  progress: (m: string) => void,
): Promise<WarmRow[]> {
  const rows: WarmRow[] = [];
  for (let round = 1; round <= o.rounds; round++) {
    const warmupS = round === 1 ? o.warmupS : Math.min(1, o.warmupS);
    for (const c of o.connections) {
      progress(`  round ${round}/${o.rounds}: bare node:http, ${c} connection(s), ${o.durationS} s`);
      const b = await load(`${bare.url}/`, c, o.durationS, warmupS, bare.pid, o.targetCore);
      rows.push({ ...b, label: "bare node:http", target: "bare", round });
      for (const { v, url } of variants) {
        if (!v.connections.includes(c)) continue;
        if (!nimbus.alive()) throw new Error(`the Nimbus server exited:\n${nimbus.stderrTail()}`);
        progress(`  round ${round}/${o.rounds}: ${v.label}, ${c} connection(s), ${o.durationS} s`);
        const r = await load(url, c, o.durationS, warmupS, nimbus.pid, o.targetCore);
        rows.push({
          ...r,
          label: v.label,
          target: "nimbus",
          round,
          config: v.config,
          rpsRatio: r.rps / b.rps,
          p99Ratio: r.latency.p99 / b.latency.p99,
          p50DeltaMs: r.latency.p50 - b.latency.p50,
        });
      }
    }
  }
  return rows;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function optMedian(values: (number | undefined)[]): number | undefined {
  const v = values.filter((x): x is number => x !== undefined && !Number.isNaN(x));
  return v.length ? median(v) : undefined;
}

function range(values: (number | undefined)[]): [number, number] | undefined {
  const v = values.filter((x): x is number => x !== undefined);
  return v.length ? [Math.min(...v), Math.max(...v)] : undefined;
}

/** Medians over rounds, one line per target and connection count, in measurement order. */
export function summarizeWarm(rows: WarmRow[]): WarmSummary[] {
  const groups = new Map<string, WarmRow[]>();
  for (const r of rows) {
    const key = `${r.label}\u0000${r.connections}`;
    const g = groups.get(key);
    if (g) g.push(r);
    else groups.set(key, [r]);
  }
  const out: WarmSummary[] = [];
  for (const g of groups.values()) {
    const first = g[0]!;
    const cpu = g.every((r) => r.cpuUsPerReq)
      ? {
          root: median(g.map((r) => r.cpuUsPerReq!.root)),
          descendants: median(g.map((r) => r.cpuUsPerReq!.descendants)),
        }
      : undefined;
    out.push({
      label: first.label,
      target: first.target,
      connections: first.connections,
      rounds: g.length,
      rps: median(g.map((r) => r.rps)),
      p50: median(g.map((r) => r.latency.p50)),
      p99: median(g.map((r) => r.latency.p99)),
      max: Math.max(...g.map((r) => r.latency.max)),
      rpsRatio: optMedian(g.map((r) => r.rpsRatio)),
      rpsRatioRange: range(g.map((r) => r.rpsRatio)),
      p99Ratio: optMedian(g.map((r) => r.p99Ratio)),
      p99RatioRange: range(g.map((r) => r.p99Ratio)),
      p50DeltaMs: optMedian(g.map((r) => r.p50DeltaMs)),
      cpuUsPerReq: cpu,
      othersOnTargetCorePct: optMedian(g.map((r) => r.othersOnTargetCorePct)),
      failures: g.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0),
    });
  }
  // Group by connection count (as measured), bare first within each.
  return out.sort(
    (a, b) => b.connections - a.connections || (a.target === "bare" ? -1 : b.target === "bare" ? 1 : 0),
  );
}
