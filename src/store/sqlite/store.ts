/**
 * The embedded store on `node:sqlite` (WAL mode): no server, one file in the data directory.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { Worker } from "node:worker_threads";
import type {
  ApiKeyRecord,
  FunctionRecord,
  InvocationRecord,
  LogQuery,
  LogRecord,
  QueueRecord,
  Store,
  UsageRow,
  VersionRecord,
} from "../types.ts";
import {
  INVOCATION_COLUMN_COUNT,
  INVOCATION_COLUMNS,
  invocationValues,
  outcomeFilter,
  queueValues,
  toFunction,
  toInvocation,
  toQueue,
  toVersion,
} from "../rows.ts";
import { batchRows, type InstanceSample, type RollupRow } from "../../observability/rollup.ts";
import { addRollup, compactRollup, readRollup, ROLLUP_SCHEMA } from "./rollup.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS functions (
  tenant TEXT NOT NULL, name TEXT NOT NULL, latest INTEGER NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant, name));
CREATE TABLE IF NOT EXISTS versions (
  tenant TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL,
  executor TEXT NOT NULL, config TEXT NOT NULL, code_dir TEXT NOT NULL, size_bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL, PRIMARY KEY (tenant, name, version));
CREATE INDEX IF NOT EXISTS versions_hash ON versions (tenant, name, hash);
CREATE TABLE IF NOT EXISTS invocations (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, fn TEXT NOT NULL, version INTEGER NOT NULL,
  trigger TEXT NOT NULL, start INTEGER NOT NULL, duration_ms REAL NOT NULL, billed_ms INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL, gb_seconds REAL NOT NULL, cpu_ms REAL NOT NULL, cold_start INTEGER NOT NULL,
  status INTEGER NOT NULL, error_code TEXT, first_byte_ms REAL);
CREATE INDEX IF NOT EXISTS invocations_fn ON invocations (tenant, fn, start);
CREATE INDEX IF NOT EXISTS invocations_start ON invocations (tenant, start);
CREATE TABLE IF NOT EXISTS logs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, fn TEXT NOT NULL, version INTEGER NOT NULL,
  invocation_id TEXT, t INTEGER NOT NULL, level TEXT NOT NULL, msg TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_fn ON logs (tenant, fn, seq);
CREATE INDEX IF NOT EXISTS logs_invocation ON logs (invocation_id);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queues (
  tenant TEXT NOT NULL, name TEXT NOT NULL, max_retries INTEGER NOT NULL, dlq TEXT,
  retention_ms INTEGER NOT NULL, max_backlog INTEGER NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (tenant, name));
`;

type Row = Record<string, any>;

/** The writer thread's end: batches go in, one reply per batch comes back. */
class WriterThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (n?: number) => void; reject: (e: Error) => void }>();
  private seq = 0;

  constructor(file: string) {
    this.worker = new Worker(new URL("./writer.ts", import.meta.url), { workerData: { file } });
    this.worker.unref();
    this.worker.on("message", (m: { id: number; error?: string; deleted?: number }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new Error(`writing records failed: ${m.error}`));
      else p?.resolve(m.deleted);
    });
    this.worker.on("error", (err) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  write(invocations: InvocationRecord[], logs: LogRecord[], samples: InstanceSample[]): Promise<void> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: () => resolve(), reject });
      this.worker.postMessage({ id, invocations, logs, samples });
    });
  }

  compact(now: number, minuteKeepMs: number, hourKeepMs: number): Promise<number> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (n) => resolve(n ?? 0), reject });
      this.worker.postMessage({ id, compact: { now, minuteKeepMs, hourKeepMs } });
    });
  }

  prune(olderThan: number, maxCharsPerFunction: number): Promise<number> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (n) => resolve(n ?? 0), reject });
      this.worker.postMessage({ id, prune: { olderThan, maxCharsPerFunction } });
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** The SQLite store. */
export class SqliteStore implements Store {
  private readonly db: DatabaseSync;
  private readonly stmts = new Map<string, StatementSync>();

  private readonly file: string;
  private writer: WriterThread | undefined;

  /** Opens (creating if needed) the database at `file`. */
  constructor(file: string) {
    this.file = file;
    this.db = new DatabaseSync(file);
    this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.db.exec(SCHEMA);
    this.db.exec(ROLLUP_SCHEMA);
    // Columns of async attempts (added after the first schema; ALTER fails once they exist).
    for (const col of [
      "event_id TEXT",
      "attempt INTEGER",
      "queue_wait_ms REAL",
      "e2e_ms REAL",
      "acquire_ms REAL",
    ]) {
      try {
        this.db.exec(`ALTER TABLE invocations ADD COLUMN ${col}`);
      } catch {}
    }
  }

  private q(sql: string): StatementSync {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  async listFunctions(tenant: string): Promise<FunctionRecord[]> {
    return this.q("SELECT * FROM functions WHERE tenant = ? ORDER BY name").all(tenant).map(toFunction);
  }

  async getFunction(tenant: string, name: string): Promise<FunctionRecord | undefined> {
    const r = this.q("SELECT * FROM functions WHERE tenant = ? AND name = ?").get(tenant, name);
    return r ? toFunction(r) : undefined;
  }

  async deleteFunction(tenant: string, name: string): Promise<void> {
    this.db.exec("BEGIN");
    try {
      for (const table of ["functions", "versions"]) {
        this.q(`DELETE FROM ${table} WHERE tenant = ? AND name = ?`).run(tenant, name);
      }
      for (const table of ["invocations", "logs", "rollup"]) {
        this.q(`DELETE FROM ${table} WHERE tenant = ? AND fn = ?`).run(tenant, name);
      }
      this.db.exec("COMMIT");
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  async listVersions(tenant: string, name: string): Promise<VersionRecord[]> {
    return this.q("SELECT * FROM versions WHERE tenant = ? AND name = ? ORDER BY version")
      .all(tenant, name)
      .map(toVersion);
  }

  async getVersion(tenant: string, name: string, version: number): Promise<VersionRecord | undefined> {
    const r = this.q("SELECT * FROM versions WHERE tenant = ? AND name = ? AND version = ?").get(
      tenant,
      name,
      version,
    );
    return r ? toVersion(r) : undefined;
  }

  async findVersionByHash(tenant: string, name: string, hash: string): Promise<VersionRecord | undefined> {
    const r = this.q(
      "SELECT * FROM versions WHERE tenant = ? AND name = ? AND hash = ? ORDER BY version DESC",
    ).get(tenant, name, hash);
    return r ? toVersion(r) : undefined;
  }

  async addVersion(v: Omit<VersionRecord, "version">): Promise<VersionRecord> {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      // Identical code gives the same version, also when another node deployed it meanwhile.
      const same = this.q(
        "SELECT * FROM versions WHERE tenant = ? AND name = ? AND hash = ? ORDER BY version DESC",
      ).get(v.tenant, v.name, v.hash);
      if (same) {
        this.q("UPDATE functions SET latest = ?, updated_at = ? WHERE tenant = ? AND name = ?").run(
          Number(same.version),
          v.createdAt,
          v.tenant,
          v.name,
        );
        this.db.exec("COMMIT");
        return toVersion(same);
      }
      const row = this.q("SELECT MAX(version) AS v FROM versions WHERE tenant = ? AND name = ?").get(
        v.tenant,
        v.name,
      );
      const version = Number(row?.v ?? 0) + 1;
      this.q(
        "INSERT INTO versions (tenant, name, version, hash, executor, config, code_dir, size_bytes, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
      ).run(
        v.tenant,
        v.name,
        version,
        v.hash,
        v.executor,
        JSON.stringify(v.config),
        v.codeDir,
        v.sizeBytes,
        v.createdAt,
      );
      this.q(
        `INSERT INTO functions (tenant, name, latest, created_at, updated_at) VALUES (?,?,?,?,?)
         ON CONFLICT (tenant, name) DO UPDATE SET latest = excluded.latest, updated_at = excluded.updated_at`,
      ).run(v.tenant, v.name, version, v.createdAt, v.createdAt);
      this.db.exec("COMMIT");
      return { ...v, version };
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  async setLatest(tenant: string, name: string, version: number): Promise<void> {
    this.q("UPDATE functions SET latest = ?, updated_at = ? WHERE tenant = ? AND name = ?").run(
      version,
      Date.now(),
      tenant,
      name,
    );
  }

  /**
   * Writes records and log lines. With a writer thread (see {@link SqliteStore.startWriter})
   * the write happens there, off the event loop that serves requests.
   */
  async writeBatch(
    invocations: InvocationRecord[],
    logs: LogRecord[],
    samples: InstanceSample[] = [],
  ): Promise<void> {
    if (invocations.length === 0 && logs.length === 0 && samples.length === 0) return;
    if (this.writer) return this.writer.write(invocations, logs, samples);
    this.writeBatchSync(invocations, logs, samples);
  }

  /** Rollup retention (see {@link Store.compactRollup}), on the writer thread when there is one. */
  async compactRollup(now: number, minuteKeepMs: number, hourKeepMs: number): Promise<number> {
    if (this.writer) return this.writer.compact(now, minuteKeepMs, hourKeepMs);
    return this.compactRollupSync(now, minuteKeepMs, hourKeepMs);
  }

  /** Rollup retention on this thread. */
  compactRollupSync(now: number, minuteKeepMs: number, hourKeepMs: number): number {
    return compactRollup(this.db, now, minuteKeepMs, hourKeepMs);
  }

  async rollup(tenant: string, fn: string | undefined, from: number, to: number): Promise<RollupRow[]> {
    return readRollup(this.db, tenant, fn, from, to);
  }

  /** Log retention (see {@link Store.pruneLogs}), on the writer thread when there is one. */
  async pruneLogs(olderThan: number, maxCharsPerFunction: number): Promise<number> {
    if (this.writer) return this.writer.prune(olderThan, maxCharsPerFunction);
    return this.pruneLogsSync(olderThan, maxCharsPerFunction);
  }

  /**
   * Log retention on this thread, in batches of 10,000 lines (each its own short
   * transaction, so writers are never held up for long). The oldest lines sit at the start
   * of the table (seq order), so each batch finds its rows without scanning the rest.
   */
  pruneLogsSync(olderThan: number, maxCharsPerFunction: number): number {
    let deleted = 0;
    const batch = this.q(
      "DELETE FROM logs WHERE seq IN (SELECT seq FROM logs WHERE t < ? ORDER BY seq LIMIT 10000)",
    );
    for (;;) {
      const n = Number(batch.run(olderThan).changes);
      deleted += n;
      if (n < 10000) break;
    }
    const fns = this.q("SELECT DISTINCT tenant, fn FROM logs").all() as { tenant: string; fn: string }[];
    for (const { tenant, fn } of fns) {
      const total = Number(
        this.q("SELECT COALESCE(SUM(LENGTH(msg)), 0) AS n FROM logs WHERE tenant = ? AND fn = ?").get(
          tenant,
          fn,
        )?.n ?? 0,
      );
      if (total <= maxCharsPerFunction) continue;
      // The newest line past the cap, counting from the newest: it and everything older go.
      const cut = this.q(
        `SELECT seq FROM (SELECT seq, SUM(LENGTH(msg)) OVER (ORDER BY seq DESC) AS acc
           FROM logs WHERE tenant = ? AND fn = ?) WHERE acc > ? ORDER BY seq DESC LIMIT 1`,
      ).get(tenant, fn, maxCharsPerFunction);
      if (!cut) continue;
      deleted += Number(
        this.q("DELETE FROM logs WHERE tenant = ? AND fn = ? AND seq <= ?").run(tenant, fn, Number(cut.seq))
          .changes,
      );
    }
    return deleted;
  }

  /**
   * Moves record writes to a worker thread with its own connection: a flush of a few
   * hundred rows takes milliseconds, which would otherwise stall every request.
   */
  startWriter(): void {
    this.writer ??= new WriterThread(this.file);
  }

  /** Writes records and log lines in one transaction, on this thread. */
  writeBatchSync(invocations: InvocationRecord[], logs: LogRecord[], samples: InstanceSample[] = []): void {
    if (invocations.length === 0 && logs.length === 0 && samples.length === 0) return;
    this.db.exec("BEGIN");
    try {
      // Many rows per statement: the per-call overhead, not SQLite, dominates single-row inserts.
      this.insertRows(
        `INSERT OR REPLACE INTO invocations (${INVOCATION_COLUMNS}) VALUES`,
        INVOCATION_COLUMN_COUNT,
        invocations,
        (r, out) => {
          out.push(...invocationValues(r, (b) => (b ? 1 : 0)));
        },
      );
      this.insertRows(
        "INSERT INTO logs (tenant, fn, version, invocation_id, t, level, msg) VALUES",
        7,
        logs,
        (l, out) => {
          out.push(l.tenant, l.fn, l.version, l.invocationId, l.t, l.level, l.msg);
        },
      );
      // The dashboard's time series, in the same transaction as the records they count.
      addRollup(this.db, batchRows(invocations, samples));
      this.db.exec("COMMIT");
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  /** Inserts rows in statements of up to 50 rows each. */
  private insertRows<R>(
    head: string,
    columns: number,
    rows: readonly R[],
    values: (row: R, out: (string | number | null)[]) => void,
  ): void {
    const per = 50;
    const tuple = `(${Array(columns).fill("?").join(",")})`;
    for (let i = 0; i < rows.length; i += per) {
      const n = Math.min(per, rows.length - i);
      const stmt = this.q(`${head} ${Array(n).fill(tuple).join(",")}`);
      const args: (string | number | null)[] = [];
      for (let j = i; j < i + n; j++) values(rows[j]!, args);
      stmt.run(...args);
    }
  }

  async listInvocations(
    tenant: string,
    fn: string,
    limit: number,
    outcome?: "ok" | "error",
  ): Promise<InvocationRecord[]> {
    return this.q(
      `SELECT * FROM invocations WHERE tenant = ? AND fn = ?${outcomeFilter(outcome)} ORDER BY start DESC LIMIT ?`,
    )
      .all(tenant, fn, limit)
      .map(toInvocation);
  }

  async getInvocation(tenant: string, id: string): Promise<InvocationRecord | undefined> {
    const r = this.q("SELECT * FROM invocations WHERE tenant = ? AND id = ?").get(tenant, id);
    return r ? toInvocation(r) : undefined;
  }

  async listLogs(q: LogQuery): Promise<LogRecord[]> {
    const where = ["tenant = ?", "fn = ?"];
    const args: (string | number)[] = [q.tenant, q.fn];
    if (q.afterSeq !== undefined) {
      where.push("seq > ?");
      args.push(q.afterSeq);
    }
    if (q.invocationId) {
      where.push("invocation_id = ?");
      args.push(q.invocationId);
    }
    if (q.since !== undefined) {
      where.push("t >= ?");
      args.push(q.since);
    }
    if (q.levels && q.levels.length > 0) {
      where.push(`level IN (${q.levels.map(() => "?").join(",")})`);
      args.push(...q.levels);
    }
    if (q.text) {
      // instr, not LIKE: the text is the user's, and % or _ in it mean themselves.
      where.push("instr(lower(msg), lower(?)) > 0");
      args.push(q.text);
    }
    const limit = q.limit ?? 1000;
    // The newest `limit` lines, returned oldest first.
    const rows = this.db
      .prepare(
        `SELECT * FROM (SELECT * FROM logs WHERE ${where.join(" AND ")} ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
      )
      .all(...args, limit);
    return rows.map((r: Row) => ({
      seq: Number(r.seq),
      tenant: r.tenant,
      fn: r.fn,
      version: Number(r.version),
      invocationId: r.invocation_id ?? null,
      t: Number(r.t),
      level: r.level,
      msg: r.msg,
    }));
  }

  async usage(tenant: string, from: number, to: number): Promise<UsageRow[]> {
    return this.q(
      `SELECT fn, SUM(CASE WHEN billed_ms > 0 THEN 1 ELSE 0 END) AS requests,
       SUM(CASE WHEN error_code IS NULL OR billed_ms = 0 THEN 0 ELSE 1 END) AS errors,
       SUM(CASE WHEN billed_ms = 0 THEN 1 ELSE 0 END) AS refused,
       SUM(gb_seconds) AS gb, SUM(cpu_ms) AS cpu, SUM(billed_ms) AS billed
       FROM invocations WHERE tenant = ? AND start >= ? AND start < ? GROUP BY fn ORDER BY fn`,
    )
      .all(tenant, from, to)
      .map((r: Row) => ({
        fn: r.fn,
        requests: Number(r.requests),
        errors: Number(r.errors),
        refused: Number(r.refused),
        gbSeconds: Number(r.gb),
        cpuMs: Number(r.cpu),
        billedMs: Number(r.billed),
      }));
  }

  async addApiKey(k: ApiKeyRecord): Promise<void> {
    this.q("INSERT INTO api_keys (id, tenant, hash, scopes, created_at) VALUES (?,?,?,?,?)").run(
      k.id,
      k.tenant,
      k.hash,
      k.scopes.join(","),
      k.createdAt,
    );
  }

  async findApiKey(hash: string): Promise<ApiKeyRecord | undefined> {
    const r = this.q("SELECT * FROM api_keys WHERE hash = ?").get(hash);
    if (!r) return undefined;
    return {
      id: String(r.id),
      tenant: String(r.tenant),
      hash: String(r.hash),
      scopes: String(r.scopes).split(","),
      createdAt: Number(r.created_at),
    };
  }

  async putQueue(q: QueueRecord): Promise<void> {
    this.q(
      "INSERT OR REPLACE INTO queues (tenant, name, max_retries, dlq, retention_ms, max_backlog, created_at) VALUES (?,?,?,?,?,?,?)",
    ).run(...queueValues(q));
  }

  async getQueue(tenant: string, name: string): Promise<QueueRecord | undefined> {
    const r = this.q("SELECT * FROM queues WHERE tenant = ? AND name = ?").get(tenant, name);
    return r ? toQueue(r) : undefined;
  }

  async listQueues(tenant: string): Promise<QueueRecord[]> {
    return this.q("SELECT * FROM queues WHERE tenant = ? ORDER BY name").all(tenant).map(toQueue);
  }

  async deleteQueue(tenant: string, name: string): Promise<void> {
    this.q("DELETE FROM queues WHERE tenant = ? AND name = ?").run(tenant, name);
  }

  async close(): Promise<void> {
    await this.writer?.close();
    this.db.close();
  }
}
