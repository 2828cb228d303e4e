/**
 * The rollup table in SQLite (see src/observability/rollup.ts for what a row holds). Called
 * inside the record writer's transaction, so it costs the request path nothing.
 */
import type { DatabaseSync } from "node:sqlite";
import {
  decodeHist,
  emptyRow,
  encodeHist,
  type InstanceSample,
  mergeInto,
  type RollupRow,
} from "../../observability/rollup.ts";

/** The table: one row per function, resolution (`m` minute, `h` hour) and period start. */
export const ROLLUP_SCHEMA = `
CREATE TABLE IF NOT EXISTS rollup (
  tenant TEXT NOT NULL, fn TEXT NOT NULL, res TEXT NOT NULL, t INTEGER NOT NULL,
  requests INTEGER NOT NULL, errors INTEGER NOT NULL, refused INTEGER NOT NULL, cold INTEGER NOT NULL,
  duration_ms REAL NOT NULL, gb_seconds REAL NOT NULL, cpu_ms REAL NOT NULL, billed_ms INTEGER NOT NULL,
  instances INTEGER NOT NULL, hist TEXT NOT NULL,
  PRIMARY KEY (tenant, fn, res, t));
CREATE INDEX IF NOT EXISTS rollup_t ON rollup (res, t);
`;

type Res = "m" | "h";

function toRow(r: Record<string, unknown>): RollupRow {
  return {
    tenant: String(r.tenant),
    fn: String(r.fn),
    t: Number(r.t),
    requests: Number(r.requests),
    errors: Number(r.errors),
    refused: Number(r.refused),
    cold: Number(r.cold),
    durationMs: Number(r.duration_ms),
    gbSeconds: Number(r.gb_seconds),
    cpuMs: Number(r.cpu_ms),
    billedMs: Number(r.billed_ms),
    instances: Number(r.instances),
    hist: decodeHist(r.hist as string),
  };
}

/** Adds rows into the table (merging with what a period already holds). Call inside a transaction. */
export function addRollup(db: DatabaseSync, rows: readonly RollupRow[], res: Res = "m"): void {
  if (rows.length === 0) return;
  const get = db.prepare("SELECT * FROM rollup WHERE tenant = ? AND fn = ? AND res = ? AND t = ?");
  const put = db.prepare(
    `INSERT OR REPLACE INTO rollup (tenant, fn, res, t, requests, errors, refused, cold, duration_ms,
     gb_seconds, cpu_ms, billed_ms, instances, hist) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
  );
  for (const r of rows) {
    const old = get.get(r.tenant, r.fn, res, r.t);
    const m = old ? mergeInto(toRow(old), r) : r;
    put.run(
      m.tenant,
      m.fn,
      res,
      m.t,
      m.requests,
      m.errors,
      m.refused,
      m.cold,
      m.durationMs,
      m.gbSeconds,
      m.cpuMs,
      m.billedMs,
      m.instances,
      encodeHist(m.hist),
    );
  }
}

/** Records instance samples (the minute keeps the largest). Call inside a transaction. */
export function addInstanceSamples(db: DatabaseSync, samples: readonly InstanceSample[]): void {
  addRollup(
    db,
    samples.map((s) => {
      const row = emptyRow(s.tenant, s.fn, s.t - (s.t % 60_000));
      row.instances = Math.max(0, Math.floor(s.instances));
      return row;
    }),
  );
}

/**
 * Retention: minutes older than `minuteKeepMs` fold into their hour, hours older than
 * `hourKeepMs` go. At most 100,000 minute rows per call (the next call takes the rest).
 * Returns the rows removed.
 */
export function compactRollup(
  db: DatabaseSync,
  now: number,
  minuteKeepMs: number,
  hourKeepMs: number,
): number {
  db.exec("BEGIN");
  try {
    const old = db
      .prepare("SELECT * FROM rollup WHERE res = 'm' AND t < ? ORDER BY t LIMIT 100000")
      .all(now - minuteKeepMs)
      .map(toRow);
    const hours = new Map<string, RollupRow>();
    for (const r of old) {
      const t = r.t - (r.t % 3_600_000);
      const key = `${r.tenant}\u0000${r.fn}\u0000${t}`;
      const h = hours.get(key) ?? emptyRow(r.tenant, r.fn, t);
      hours.set(key, mergeInto(h, r));
    }
    addRollup(db, [...hours.values()], "h");
    const del = db.prepare("DELETE FROM rollup WHERE tenant = ? AND fn = ? AND res = 'm' AND t = ?");
    for (const r of old) del.run(r.tenant, r.fn, r.t);
    const gone = Number(
      db.prepare("DELETE FROM rollup WHERE res = 'h' AND t < ?").run(now - hourKeepMs).changes,
    );
    db.exec("COMMIT");
    return old.length + gone;
  } catch (err) {
    db.exec("ROLLBACK");
    throw err;
  }
}

/** Rows of a tenant (one function, or all) in [from, to), both resolutions. */
export function readRollup(
  db: DatabaseSync,
  tenant: string,
  fn: string | undefined,
  from: number,
  to: number,
): RollupRow[] {
  // An hour row starts up to an hour before `from` yet holds minutes inside the range.
  const lo = from - (from % 3_600_000);
  const range = "((res = 'm' AND t >= ?) OR (res = 'h' AND t >= ?)) AND t < ?";
  const rows =
    fn === undefined
      ? db.prepare(`SELECT * FROM rollup WHERE tenant = ? AND ${range} ORDER BY t`).all(tenant, from, lo, to)
      : db
          .prepare(`SELECT * FROM rollup WHERE tenant = ? AND fn = ? AND ${range} ORDER BY t`)
          .all(tenant, fn, from, lo, to);
  return rows.map(toRow);
}
