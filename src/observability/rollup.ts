/**
 * The per-minute rollup the dashboard and `nimbus top` read: per function and minute,
 * counts, sums and a duration histogram (fixed buckets, so minutes merge by adding and
 * p50/p99 come out of any range without the raw records). Minutes older than a retention
 * are folded into hours; hours older than theirs are deleted, so the table stays bounded:
 * functions × (minutes kept + hours kept) rows.
 *
 * This file is pure (no store, no clock): both SQL stores call it inside the record
 * writer's transaction.
 */
import type { InvocationRecord } from "../store/types.ts";

/**
 * Upper bounds (ms) of the duration histogram's buckets; a last bucket holds the rest.
 * Roughly ×1.5 apart: a quantile read from them is off by at most half a bucket (~25%).
 */
export const DURATION_BUCKETS_MS: readonly number[] = [
  1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500,
  10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 900_000,
];

/** One rollup row: one function over one minute (or hour). */
export interface RollupRow {
  tenant: string;
  fn: string;
  /** Start of the minute (or hour), ms since the epoch. */
  t: number;
  /** Invocations that ran (billed). */
  requests: number;
  /** Of those, failed. */
  errors: number;
  /** Refused before running (throttled): not billed. */
  refused: number;
  cold: number;
  durationMs: number;
  gbSeconds: number;
  cpuMs: number;
  billedMs: number;
  /** Most instances seen in the period (sampled), or 0 when none was sampled. */
  instances: number;
  /** Counts per {@link DURATION_BUCKETS_MS} bucket (length buckets + 1). */
  hist: number[];
}

/** A sample of a function's started instances. */
export interface InstanceSample {
  tenant: string;
  fn: string;
  t: number;
  instances: number;
}

/** The bucket index of a duration. */
export function bucketOf(ms: number): number {
  let lo = 0;
  let hi = DURATION_BUCKETS_MS.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ms <= DURATION_BUCKETS_MS[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** An empty row for `tenant/fn` at `t`. */
export function emptyRow(tenant: string, fn: string, t: number): RollupRow {
  return {
    tenant,
    fn,
    t,
    requests: 0,
    errors: 0,
    refused: 0,
    cold: 0,
    durationMs: 0,
    gbSeconds: 0,
    cpuMs: 0,
    billedMs: 0,
    instances: 0,
    hist: new Array<number>(DURATION_BUCKETS_MS.length + 1).fill(0),
  };
}

/** Adds `b` into `a` (same function; periods merge). */
export function mergeInto(a: RollupRow, b: RollupRow): RollupRow {
  a.requests += b.requests;
  a.errors += b.errors;
  a.refused += b.refused;
  a.cold += b.cold;
  a.durationMs += b.durationMs;
  a.gbSeconds += b.gbSeconds;
  a.cpuMs += b.cpuMs;
  a.billedMs += b.billedMs;
  a.instances = Math.max(a.instances, b.instances);
  for (let i = 0; i < a.hist.length; i++) a.hist[i]! += b.hist[i] ?? 0;
  return a;
}

/** The row of `tenant/fn` at `t` in `rows`, added empty when missing. */
function rowOf(rows: Map<string, RollupRow>, tenant: string, fn: string, t: number): RollupRow {
  const key = `${tenant}\u0000${fn}\u0000${t}`;
  let row = rows.get(key);
  if (!row) {
    row = emptyRow(tenant, fn, t);
    rows.set(key, row);
  }
  return row;
}

/** Groups a batch of records into rows per function and period of `periodMs` (one minute by default). */
export function rollupRecords(records: readonly InvocationRecord[], periodMs = 60_000): RollupRow[] {
  const rows = new Map<string, RollupRow>();
  for (const r of records) {
    const row = rowOf(rows, r.tenant, r.fn, r.start - (r.start % periodMs));
    if (r.billedMs === 0) {
      row.refused++;
      continue;
    }
    row.requests++;
    if (r.errorCode) row.errors++;
    if (r.coldStart) row.cold++;
    row.durationMs += r.durationMs;
    row.gbSeconds += r.gbSeconds;
    row.cpuMs += r.cpuMs;
    row.billedMs += r.billedMs;
    row.hist[bucketOf(r.durationMs)]!++;
  }
  return [...rows.values()];
}

/** Rows recording instance samples: each minute keeps the largest count seen. */
export function sampleRows(samples: readonly InstanceSample[]): RollupRow[] {
  return samples.map((s) => {
    const row = emptyRow(s.tenant, s.fn, s.t - (s.t % 60_000));
    row.instances = Math.max(0, Math.floor(s.instances));
    return row;
  });
}

/** Merges rows of the same function and period into one each (the inputs are not changed). */
export function mergeByPeriod(rows: readonly RollupRow[], periodMs = 60_000): RollupRow[] {
  const out = new Map<string, RollupRow>();
  for (const r of rows) mergeInto(rowOf(out, r.tenant, r.fn, r.t - (r.t % periodMs)), r);
  return [...out.values()];
}

/**
 * What one `writeBatch` adds to the minute rollup: its records and instance samples, one row
 * per function and minute (a store may upsert them in one statement, which needs unique keys).
 */
export function batchRows(
  records: readonly InvocationRecord[],
  samples: readonly InstanceSample[],
): RollupRow[] {
  return mergeByPeriod([...rollupRecords(records), ...sampleRows(samples)]);
}

/** The hour an hour row covering `t` starts at. */
export function hourOf(t: number): number {
  return t - (t % 3_600_000);
}

/**
 * The `q` quantile (0..1) of the durations in a histogram, as the upper bound of the bucket
 * it falls in (the last bucket reports its lower bound); null without data.
 */
export function quantile(hist: readonly number[], q: number): number | null {
  let total = 0;
  for (const n of hist) total += n;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i]!;
    if (seen >= rank) return DURATION_BUCKETS_MS[i] ?? DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.length - 1]!;
  }
  return null;
}

/** Encodes a histogram for its column (comma-separated counts: small, and merges without JSON). */
export function encodeHist(hist: readonly number[]): string {
  return hist.join(",");
}

/** Decodes a histogram column; a malformed one reads as empty. */
export function decodeHist(s: string | null | undefined): number[] {
  const out = new Array<number>(DURATION_BUCKETS_MS.length + 1).fill(0);
  if (!s) return out;
  const parts = s.split(",");
  for (let i = 0; i < out.length && i < parts.length; i++) {
    const n = Number(parts[i]);
    out[i] = Number.isFinite(n) && n >= 0 ? n : 0;
  }
  return out;
}

/** One point of a time series as the API returns it. */
export interface SeriesPoint {
  /** Start of the step, ms since the epoch. */
  t: number;
  requests: number;
  /** Requests per second over the step. */
  rps: number;
  errors: number;
  /** errors / requests, 0..1 (0 without requests). */
  errorRate: number;
  refused: number;
  cold: number;
  /** cold / requests, 0..1. */
  coldRate: number;
  p50: number | null;
  p99: number | null;
  gbSeconds: number;
  cpuMs: number;
  instances: number;
}

/** All rows folded into one point covering `periodMs` (its rps is requests over the period). */
export function summarize(rows: readonly RollupRow[], periodMs: number): SeriesPoint {
  const all = emptyRow("", "", 0);
  for (const r of rows) mergeInto(all, r);
  return point(all, periodMs);
}

function point(s: RollupRow, stepMs: number): SeriesPoint {
  return {
    t: s.t,
    requests: s.requests,
    rps: s.requests / (stepMs / 1000),
    errors: s.errors,
    errorRate: s.requests ? s.errors / s.requests : 0,
    refused: s.refused,
    cold: s.cold,
    coldRate: s.requests ? s.cold / s.requests : 0,
    p50: quantile(s.hist, 0.5),
    p99: quantile(s.hist, 0.99),
    gbSeconds: s.gbSeconds,
    cpuMs: s.cpuMs,
    instances: s.instances,
  };
}

/**
 * Folds rows into steps of `stepMs` from `from` to `to` (every step present, zero when
 * empty: a chart needs the gaps).
 */
export function toSeries(
  rows: readonly RollupRow[],
  from: number,
  to: number,
  stepMs: number,
): SeriesPoint[] {
  const start = from - (from % stepMs);
  const n = Math.max(1, Math.ceil((to - start) / stepMs));
  const steps: RollupRow[] = [];
  for (let i = 0; i < n; i++) steps.push(emptyRow("", "", start + i * stepMs));
  for (const r of rows) {
    const i = Math.floor((r.t - start) / stepMs);
    if (i >= 0 && i < n) mergeInto(steps[i]!, r);
  }
  return steps.map((s) => point(s, stepMs));
}
