/**
 * The cluster store on PostgreSQL (`pg`): every node opens one over the same database and
 * schema. Version numbering and "identical code gives the same version" hold across nodes
 * through a per-function advisory transaction lock.
 */
import pg from "pg";
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
  batchRows,
  hourOf,
  type InstanceSample,
  mergeByPeriod,
  type RollupRow,
} from "../../observability/rollup.ts";
import {
  INVOCATION_COLUMN_COUNT,
  INVOCATION_COLUMNS,
  invocationValues,
  outcomeFilter,
  type Row,
  queueValues,
  ROLLUP_VALUE_COLUMNS,
  rollupValues,
  toFunction,
  toInvocation,
  toQueue,
  toRollupRow,
  toVersion,
} from "../rows.ts";
import { migrate, SCHEMA_NAME } from "./migrations.ts";

/** How to reach the database. */
export interface PostgresStoreOptions {
  /** `postgres://user@host:port/db`. */
  connectionString: string;
  /** The schema holding Nimbus's tables (created and migrated at open). @default "nimbus" */
  schema?: string;
  /** Connections in the pool, at most. @default 10 */
  maxConnections?: number;
}

const num = (v: unknown): number => Number(v);

/** Rows per INSERT statement (19 columns × 500 rows stays far below the 65,535 parameters). */
const ROWS_PER_INSERT = 500;

/** The PostgreSQL store. Open it with {@link PostgresStore.open}. */
export class PostgresStore implements Store {
  private readonly pool: pg.Pool;
  private readonly schema: string;

  private constructor(pool: pg.Pool, schema: string) {
    this.pool = pool;
    this.schema = schema;
  }

  /**
   * Connects, brings the schema up to date (safe from many nodes at once) and returns the
   * store.
   * @example const store = await PostgresStore.open({ connectionString: "postgres://127.0.0.1/nimbus" });
   */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const schema = opts.schema ?? "nimbus";
    if (!SCHEMA_NAME.test(schema)) throw new Error(`schema name '${schema}' must match ${SCHEMA_NAME}.`);
    const pool = new pg.Pool({
      connectionString: opts.connectionString,
      max: opts.maxConnections ?? 10,
      // Every connection sees Nimbus's tables unqualified.
      options: `-c search_path=${schema}`,
    });
    // An idle connection that drops (database restart) must not crash the process.
    pool.on("error", () => {});
    try {
      await migrate(pool, schema);
    } catch (err) {
      await pool.end();
      throw new Error(
        `Could not prepare the PostgreSQL store (${(err as Error).message}): check --store and that the database accepts connections.`,
        { cause: err },
      );
    }
    return new PostgresStore(pool, schema);
  }

  /** Runs `body` in one transaction on one connection. */
  private async tx<T>(body: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query("BEGIN");
      const out = await body(c);
      await c.query("COMMIT");
      return out;
    } catch (err) {
      await c.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  }

  async listFunctions(tenant: string): Promise<FunctionRecord[]> {
    const r = await this.pool.query("SELECT * FROM functions WHERE tenant = $1 ORDER BY name", [tenant]);
    return r.rows.map(toFunction);
  }

  async getFunction(tenant: string, name: string): Promise<FunctionRecord | undefined> {
    const r = await this.pool.query("SELECT * FROM functions WHERE tenant = $1 AND name = $2", [
      tenant,
      name,
    ]);
    return r.rows[0] ? toFunction(r.rows[0]) : undefined;
  }

  async deleteFunction(tenant: string, name: string): Promise<void> {
    await this.tx(async (c) => {
      await lockFunction(c, this.schema, tenant, name);
      await c.query("DELETE FROM functions WHERE tenant = $1 AND name = $2", [tenant, name]);
      await c.query("DELETE FROM versions WHERE tenant = $1 AND name = $2", [tenant, name]);
      await c.query("DELETE FROM invocations WHERE tenant = $1 AND fn = $2", [tenant, name]);
      await c.query("DELETE FROM logs WHERE tenant = $1 AND fn = $2", [tenant, name]);
      await c.query("DELETE FROM rollup WHERE tenant = $1 AND fn = $2", [tenant, name]);
    });
  }

  async listVersions(tenant: string, name: string): Promise<VersionRecord[]> {
    const r = await this.pool.query(
      "SELECT * FROM versions WHERE tenant = $1 AND name = $2 ORDER BY version",
      [tenant, name],
    );
    return r.rows.map(toVersion);
  }

  async getVersion(tenant: string, name: string, version: number): Promise<VersionRecord | undefined> {
    const r = await this.pool.query(
      "SELECT * FROM versions WHERE tenant = $1 AND name = $2 AND version = $3",
      [tenant, name, version],
    );
    return r.rows[0] ? toVersion(r.rows[0]) : undefined;
  }

  async findVersionByHash(tenant: string, name: string, hash: string): Promise<VersionRecord | undefined> {
    const r = await this.pool.query(
      "SELECT * FROM versions WHERE tenant = $1 AND name = $2 AND hash = $3 ORDER BY version DESC LIMIT 1",
      [tenant, name, hash],
    );
    return r.rows[0] ? toVersion(r.rows[0]) : undefined;
  }

  async addVersion(v: Omit<VersionRecord, "version">): Promise<VersionRecord> {
    return this.tx(async (c) => {
      // Deploys of one function serialize here, across every node: the number read below
      // cannot be taken by another transaction before this one commits.
      await lockFunction(c, this.schema, v.tenant, v.name);
      const same = await c.query(
        "SELECT * FROM versions WHERE tenant = $1 AND name = $2 AND hash = $3 ORDER BY version DESC LIMIT 1",
        [v.tenant, v.name, v.hash],
      );
      let version: number;
      let out: VersionRecord;
      if (same.rows[0]) {
        out = toVersion(same.rows[0]);
        version = out.version;
      } else {
        const max = await c.query("SELECT MAX(version) AS v FROM versions WHERE tenant = $1 AND name = $2", [
          v.tenant,
          v.name,
        ]);
        version = num(max.rows[0]?.v ?? 0) + 1;
        await c.query(
          `INSERT INTO versions (tenant, name, version, hash, executor, config, code_dir, size_bytes, created_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
          [
            v.tenant,
            v.name,
            version,
            v.hash,
            v.executor,
            JSON.stringify(v.config),
            v.codeDir,
            v.sizeBytes,
            v.createdAt,
          ],
        );
        out = { ...v, version };
      }
      await c.query(
        `INSERT INTO functions (tenant, name, latest, created_at, updated_at) VALUES ($1,$2,$3,$4,$4)
         ON CONFLICT (tenant, name) DO UPDATE SET latest = excluded.latest, updated_at = excluded.updated_at`,
        [v.tenant, v.name, version, v.createdAt],
      );
      return out;
    });
  }

  async setLatest(tenant: string, name: string, version: number): Promise<void> {
    await this.pool.query(
      "UPDATE functions SET latest = $1, updated_at = $2 WHERE tenant = $3 AND name = $4",
      [version, Date.now(), tenant, name],
    );
  }

  async writeBatch(
    invocations: InvocationRecord[],
    logs: LogRecord[],
    samples: InstanceSample[] = [],
  ): Promise<void> {
    if (invocations.length === 0 && logs.length === 0 && samples.length === 0) return;
    await this.tx(async (c) => {
      for (let i = 0; i < invocations.length; i += ROWS_PER_INSERT) {
        const rows = invocations.slice(i, i + ROWS_PER_INSERT);
        const args: unknown[] = [];
        for (const r of rows) args.push(...invocationValues(r, (x) => x));
        // A record written twice (a retried flush) replaces the first, as SQLite's INSERT OR REPLACE.
        await c.query(
          `INSERT INTO invocations (${INVOCATION_COLUMNS})
           VALUES ${placeholders(rows.length, INVOCATION_COLUMN_COUNT)}
           ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, fn = excluded.fn, version = excluded.version,
             trigger = excluded.trigger, start = excluded.start, duration_ms = excluded.duration_ms,
             billed_ms = excluded.billed_ms, memory_mb = excluded.memory_mb, gb_seconds = excluded.gb_seconds,
             cpu_ms = excluded.cpu_ms, cold_start = excluded.cold_start, status = excluded.status,
             error_code = excluded.error_code, first_byte_ms = excluded.first_byte_ms, event_id = excluded.event_id,
             attempt = excluded.attempt, queue_wait_ms = excluded.queue_wait_ms, e2e_ms = excluded.e2e_ms,
             acquire_ms = excluded.acquire_ms`,
          args,
        );
      }
      for (let i = 0; i < logs.length; i += ROWS_PER_INSERT) {
        const rows = logs.slice(i, i + ROWS_PER_INSERT);
        const args: unknown[] = [];
        for (const l of rows) args.push(l.tenant, l.fn, l.version, l.invocationId, l.t, l.level, l.msg);
        await c.query(
          `INSERT INTO logs (tenant, fn, version, invocation_id, t, level, msg) VALUES ${placeholders(rows.length, 7)}`,
          args,
        );
      }
      // The dashboard's time series, in the same transaction as the records they count.
      await addRollup(c, batchRows(invocations, samples), "m");
    });
  }

  async listInvocations(
    tenant: string,
    fn: string,
    limit: number,
    outcome?: "ok" | "error",
  ): Promise<InvocationRecord[]> {
    const r = await this.pool.query(
      `SELECT * FROM invocations WHERE tenant = $1 AND fn = $2${outcomeFilter(outcome)} ORDER BY start DESC LIMIT $3`,
      [tenant, fn, limit],
    );
    return r.rows.map(toInvocation);
  }

  async getInvocation(tenant: string, id: string): Promise<InvocationRecord | undefined> {
    const r = await this.pool.query("SELECT * FROM invocations WHERE tenant = $1 AND id = $2", [tenant, id]);
    return r.rows[0] ? toInvocation(r.rows[0]) : undefined;
  }

  async rollup(tenant: string, fn: string | undefined, from: number, to: number): Promise<RollupRow[]> {
    // An hour row starts up to an hour before `from` yet holds minutes inside the range.
    const args: unknown[] = [tenant, from, hourOf(from), to];
    if (fn !== undefined) args.push(fn);
    const r = await this.pool.query(
      `SELECT * FROM rollup WHERE tenant = $1 AND ((res = 'm' AND t >= $2) OR (res = 'h' AND t >= $3)) AND t < $4
       ${fn === undefined ? "" : "AND fn = $5"} ORDER BY t, fn`,
      args,
    );
    return r.rows.map(toRollupRow);
  }

  /**
   * Rollup retention (see {@link Store.compactRollup}): at most 100,000 minute rows per call
   * (the next call takes the rest). The minutes are locked while they fold, so two nodes
   * compacting at once fold each minute once.
   */
  async compactRollup(now: number, minuteKeepMs: number, hourKeepMs: number): Promise<number> {
    return this.tx(async (c) => {
      const old = (
        await c.query("SELECT * FROM rollup WHERE res = 'm' AND t < $1 ORDER BY t LIMIT 100000 FOR UPDATE", [
          now - minuteKeepMs,
        ])
      ).rows.map(toRollupRow);
      await addRollup(c, mergeByPeriod(old, 3_600_000), "h");
      // By key, not by time: a late minute written after the SELECT has not been folded yet.
      await c.query(
        `DELETE FROM rollup r USING unnest($1::text[], $2::text[], $3::bigint[]) AS d(tenant, fn, t)
         WHERE r.res = 'm' AND r.tenant = d.tenant AND r.fn = d.fn AND r.t = d.t`,
        [old.map((r) => r.tenant), old.map((r) => r.fn), old.map((r) => r.t)],
      );
      const gone = await c.query("DELETE FROM rollup WHERE res = 'h' AND t < $1", [now - hourKeepMs]);
      return old.length + (gone.rowCount ?? 0);
    });
  }

  async listLogs(q: LogQuery): Promise<LogRecord[]> {
    const args: unknown[] = [q.tenant, q.fn];
    const where = ["tenant = $1", "fn = $2"];
    if (q.afterSeq !== undefined) {
      args.push(q.afterSeq);
      where.push(`seq > $${args.length}`);
    }
    if (q.invocationId) {
      args.push(q.invocationId);
      where.push(`invocation_id = $${args.length}`);
    }
    if (q.since !== undefined) {
      args.push(q.since);
      where.push(`t >= $${args.length}`);
    }
    if (q.levels && q.levels.length > 0) {
      args.push(q.levels);
      where.push(`level = ANY($${args.length}::text[])`);
    }
    if (q.text) {
      // The text is the user's: its % and _ mean themselves, not LIKE wildcards.
      args.push(`%${escapeLike(q.text)}%`);
      where.push(`msg ILIKE $${args.length} ESCAPE '\\'`);
    }
    args.push(q.limit ?? 1000);
    // The newest `limit` lines, returned oldest first.
    const r = await this.pool.query(
      `SELECT * FROM (SELECT * FROM logs WHERE ${where.join(" AND ")} ORDER BY seq DESC LIMIT $${args.length}) AS l
       ORDER BY seq`,
      args,
    );
    return r.rows.map((x: Row) => ({
      seq: num(x.seq),
      tenant: String(x.tenant),
      fn: String(x.fn),
      version: num(x.version),
      invocationId: (x.invocation_id as string | null) ?? null,
      t: num(x.t),
      level: String(x.level),
      msg: String(x.msg),
    }));
  }

  /** Log retention (see {@link Store.pruneLogs}): batches of 10,000 lines, each its own statement. */
  async pruneLogs(olderThan: number, maxCharsPerFunction: number): Promise<number> {
    let deleted = 0;
    for (;;) {
      const r = await this.pool.query(
        "DELETE FROM logs WHERE seq IN (SELECT seq FROM logs WHERE t < $1 ORDER BY seq LIMIT 10000)",
        [olderThan],
      );
      deleted += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < 10000) break;
    }
    // Per function: the newest line past the cap (counting from the newest) and all older go.
    const r = await this.pool.query(
      `WITH acc AS (
         SELECT seq, tenant, fn, SUM(LENGTH(msg)) OVER (PARTITION BY tenant, fn ORDER BY seq DESC) AS acc FROM logs),
       cut AS (SELECT tenant, fn, MAX(seq) AS seq FROM acc WHERE acc > $1 GROUP BY tenant, fn)
       DELETE FROM logs l USING cut WHERE l.tenant = cut.tenant AND l.fn = cut.fn AND l.seq <= cut.seq`,
      [maxCharsPerFunction],
    );
    return deleted + (r.rowCount ?? 0);
  }

  async usage(tenant: string, from: number, to: number): Promise<UsageRow[]> {
    const r = await this.pool.query(
      `SELECT fn, SUM(CASE WHEN billed_ms > 0 THEN 1 ELSE 0 END) AS requests,
       SUM(CASE WHEN error_code IS NULL OR billed_ms = 0 THEN 0 ELSE 1 END) AS errors,
       SUM(CASE WHEN billed_ms = 0 THEN 1 ELSE 0 END) AS refused,
       SUM(gb_seconds) AS gb, SUM(cpu_ms) AS cpu, SUM(billed_ms) AS billed
       FROM invocations WHERE tenant = $1 AND start >= $2 AND start < $3 GROUP BY fn ORDER BY fn`,
      [tenant, from, to],
    );
    return r.rows.map((x: Row) => ({
      fn: String(x.fn),
      requests: num(x.requests),
      errors: num(x.errors),
      refused: num(x.refused),
      gbSeconds: num(x.gb),
      cpuMs: num(x.cpu),
      billedMs: num(x.billed),
    }));
  }

  async addApiKey(k: ApiKeyRecord): Promise<void> {
    await this.pool.query(
      "INSERT INTO api_keys (id, tenant, hash, scopes, created_at) VALUES ($1,$2,$3,$4,$5)",
      [k.id, k.tenant, k.hash, k.scopes.join(","), k.createdAt],
    );
  }

  async putQueue(q: QueueRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO queues (tenant, name, max_retries, dlq, retention_ms, max_backlog, created_at)
       VALUES ($1,$2,$3,$4,$5,$6,$7)
       ON CONFLICT (tenant, name) DO UPDATE SET max_retries = EXCLUDED.max_retries, dlq = EXCLUDED.dlq,
         retention_ms = EXCLUDED.retention_ms, max_backlog = EXCLUDED.max_backlog, created_at = EXCLUDED.created_at`,
      queueValues(q),
    );
  }

  async getQueue(tenant: string, name: string): Promise<QueueRecord | undefined> {
    const r = await this.pool.query("SELECT * FROM queues WHERE tenant = $1 AND name = $2", [tenant, name]);
    const x = r.rows[0] as Row | undefined;
    return x ? toQueue(x) : undefined;
  }

  async listQueues(tenant: string): Promise<QueueRecord[]> {
    const r = await this.pool.query("SELECT * FROM queues WHERE tenant = $1 ORDER BY name", [tenant]);
    return (r.rows as Row[]).map(toQueue);
  }

  async deleteQueue(tenant: string, name: string): Promise<void> {
    await this.pool.query("DELETE FROM queues WHERE tenant = $1 AND name = $2", [tenant, name]);
  }

  async findApiKey(hash: string): Promise<ApiKeyRecord | undefined> {
    const r = await this.pool.query("SELECT * FROM api_keys WHERE hash = $1", [hash]);
    const x = r.rows[0] as Row | undefined;
    if (!x) return undefined;
    return {
      id: String(x.id),
      tenant: String(x.tenant),
      hash: String(x.hash),
      scopes: String(x.scopes).split(","),
      createdAt: num(x.created_at),
    };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/**
 * Serializes writers of one function's versions until the transaction ends, on every node.
 * Advisory locks are database-wide, so the key names the schema too.
 */
async function lockFunction(c: pg.PoolClient, schema: string, tenant: string, name: string): Promise<void> {
  await c.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [
    `nimbus:fn:${schema}:${tenant}/${name}`,
  ]);
}

/** The rollup columns summed when a period already has a row (`instances` keeps the largest). */
const ROLLUP_SUMS = [
  "requests",
  "errors",
  "refused",
  "cold",
  "duration_ms",
  "gb_seconds",
  "cpu_ms",
  "billed_ms",
]
  .map((col) => `${col} = rollup.${col} + EXCLUDED.${col}`)
  .join(", ");

/**
 * Adds rows (unique per function and period) into the rollup at resolution `res`, merging
 * with what a period holds in the same statement, so writers on several nodes add up
 * instead of overwriting each other. The histograms (encodeHist text) add bucket by bucket.
 */
async function addRollup(c: pg.PoolClient, rows: readonly RollupRow[], res: "m" | "h"): Promise<void> {
  // One key order for every writer: two transactions touching the same periods cannot deadlock.
  const sorted = [...rows].sort((a, b) =>
    a.tenant !== b.tenant
      ? a.tenant < b.tenant
        ? -1
        : 1
      : a.fn !== b.fn
        ? a.fn < b.fn
          ? -1
          : 1
        : a.t - b.t,
  );
  const cols = 4 + ROLLUP_VALUE_COLUMNS.split(",").length;
  for (let i = 0; i < sorted.length; i += ROWS_PER_INSERT) {
    const chunk = sorted.slice(i, i + ROWS_PER_INSERT);
    const args: unknown[] = [];
    for (const r of chunk) args.push(r.tenant, r.fn, res, r.t, ...rollupValues(r));
    await c.query(
      `INSERT INTO rollup (tenant, fn, res, t, ${ROLLUP_VALUE_COLUMNS}) VALUES ${placeholders(chunk.length, cols)}
       ON CONFLICT (tenant, fn, res, t) DO UPDATE SET ${ROLLUP_SUMS},
         instances = GREATEST(rollup.instances, EXCLUDED.instances),
         hist = (SELECT string_agg((COALESCE(a, '0')::bigint + COALESCE(b, '0')::bigint)::text, ',' ORDER BY n)
                 FROM unnest(string_to_array(rollup.hist, ','), string_to_array(EXCLUDED.hist, ','))
                   WITH ORDINALITY AS u(a, b, n))`,
      args,
    );
  }
}

/** `text` with LIKE's wildcards and escape character escaped (by `\`), to match literally. */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (ch) => `\\${ch}`);
}

/** `($1,$2),($3,$4)…` for `rows` rows of `cols` columns. */
function placeholders(rows: number, cols: number): string {
  const out: string[] = [];
  for (let r = 0; r < rows; r++) {
    const one: string[] = [];
    for (let c = 0; c < cols; c++) one.push(`$${r * cols + c + 1}`);
    out.push(`(${one.join(",")})`);
  }
  return out.join(",");
}
