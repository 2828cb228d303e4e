/**
 * The rollup table in SQLite (see src/observability/rollup.ts for what a row holds). Called
 * inside the record writer's transaction, so it costs the request path nothing.
 */
import type { DatabaseSync } from "node:sqlite";
import { hourOf, mergeByPeriod, mergeInto, type RollupRow } from "../../observability/rollup.ts";
import { ROLLUP_VALUE_COLUMNS, rollupValues, toRollupRow } from "../rows.ts";

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

/** Adds rows into the table (merging with what a period already holds). Call inside a transaction. */
export function addRollup(db: DatabaseSync, rows: readonly RollupRow[], res: Res = "m"): void {
  if (rows.length === 0) return;
  const get = db.prepare("SELECT * FROM rollup WHERE tenant = ? AND fn = ? AND res = ? AND t = ?");
  const put = db.prepare(
    `INSERT OR REPLACE INTO rollup (tenant, fn, res, t, ${ROLLUP_VALUE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
  );
  for (const r of rows) {
    const old = get.get(r.tenant, r.fn, res, r.t);
    const m = old ? mergeInto(toRollupRow(old), r) : r;
    put.run(m.tenant, m.fn, res, m.t, ...rollupValues(m));
  }
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
      .map(toRollupRow);
    addRollup(db, mergeByPeriod(old, 3_600_000), "h");
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
  const lo = hourOf(from);
  const range = "((res = 'm' AND t >= ?) OR (res = 'h' AND t >= ?)) AND t < ?";
  const rows =
    fn === undefined
      ? db
          .prepare(`SELECT * FROM rollup WHERE tenant = ? AND ${range} ORDER BY t, fn`)
          .all(tenant, from, lo, to)
      : db
          .prepare(`SELECT * FROM rollup WHERE tenant = ? AND fn = ? AND ${range} ORDER BY t, fn`)
          .all(tenant, fn, from, lo, to);
  return rows.map(toRollupRow);
}
