/**
 * Versioned schema migrations of the PostgreSQL store. Each runs once, in its own
 * transaction, in order; `nimbus_schema_migrations` records which ran. Nodes that start at
 * the same time serialize on an advisory lock, so each migration runs exactly once.
 */
import type { Pool, PoolClient } from "pg";

/** One step of the schema. Never edit a released step: add the next one. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The schema, step by step. Plain CREATE (no IF NOT EXISTS): a step that ran twice fails loudly. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "functions, versions, invocations, logs, api keys",
    sql: `
CREATE TABLE functions (
  tenant TEXT NOT NULL, name TEXT NOT NULL, latest INTEGER NOT NULL,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  PRIMARY KEY (tenant, name));
CREATE TABLE versions (
  tenant TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, hash TEXT NOT NULL,
  executor TEXT NOT NULL, config JSONB NOT NULL, code_dir TEXT NOT NULL, size_bytes BIGINT NOT NULL,
  created_at BIGINT NOT NULL, PRIMARY KEY (tenant, name, version));
CREATE INDEX versions_hash ON versions (tenant, name, hash);
CREATE TABLE invocations (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, fn TEXT NOT NULL, version INTEGER NOT NULL,
  trigger TEXT NOT NULL, start BIGINT NOT NULL, duration_ms DOUBLE PRECISION NOT NULL,
  billed_ms BIGINT NOT NULL, memory_mb INTEGER NOT NULL, gb_seconds DOUBLE PRECISION NOT NULL,
  cpu_ms DOUBLE PRECISION NOT NULL, cold_start BOOLEAN NOT NULL, status INTEGER NOT NULL,
  error_code TEXT, first_byte_ms DOUBLE PRECISION);
CREATE INDEX invocations_fn ON invocations (tenant, fn, start);
CREATE INDEX invocations_start ON invocations (tenant, start);
CREATE TABLE logs (
  seq BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, fn TEXT NOT NULL, version INTEGER NOT NULL,
  invocation_id TEXT, t BIGINT NOT NULL, level TEXT NOT NULL, msg TEXT NOT NULL);
CREATE INDEX logs_fn ON logs (tenant, fn, seq);
CREATE INDEX logs_invocation ON logs (invocation_id);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL,
  created_at BIGINT NOT NULL);`,
  },
  {
    version: 2,
    name: "async attempt columns on invocations",
    sql: `
ALTER TABLE invocations ADD COLUMN event_id TEXT;
ALTER TABLE invocations ADD COLUMN attempt INTEGER;
ALTER TABLE invocations ADD COLUMN queue_wait_ms DOUBLE PRECISION;
ALTER TABLE invocations ADD COLUMN e2e_ms DOUBLE PRECISION;`,
  },
  {
    version: 3,
    name: "named queues",
    sql: `
CREATE TABLE queues (
  tenant TEXT NOT NULL, name TEXT NOT NULL, max_retries INTEGER NOT NULL, dlq TEXT,
  retention_ms BIGINT NOT NULL, max_backlog INTEGER NOT NULL, created_at BIGINT NOT NULL,
  PRIMARY KEY (tenant, name));`,
  },
  {
    version: 4,
    name: "acquire time on invocations; per-minute rollup",
    // hist: comma-separated bucket counts (encodeHist), as the SQLite store keeps them.
    sql: `
ALTER TABLE invocations ADD COLUMN acquire_ms DOUBLE PRECISION;
CREATE INDEX invocations_error ON invocations (tenant, fn, start) WHERE error_code IS NOT NULL;
CREATE TABLE rollup (
  tenant TEXT NOT NULL, fn TEXT NOT NULL, res TEXT NOT NULL CHECK (res IN ('m', 'h')), t BIGINT NOT NULL,
  requests BIGINT NOT NULL, errors BIGINT NOT NULL, refused BIGINT NOT NULL, cold BIGINT NOT NULL,
  duration_ms DOUBLE PRECISION NOT NULL, gb_seconds DOUBLE PRECISION NOT NULL, cpu_ms DOUBLE PRECISION NOT NULL,
  billed_ms BIGINT NOT NULL, instances INTEGER NOT NULL, hist TEXT NOT NULL,
  PRIMARY KEY (tenant, fn, res, t));
CREATE INDEX rollup_t ON rollup (res, t);`,
  },
];

/** `^[a-z_][a-z0-9_]{0,62}$`: a schema name that needs no quoting tricks. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Brings `schema` (created if missing) up to the newest migration. Safe to call from many
 * nodes at once: a session advisory lock (keyed by the schema name) lets one run at a time,
 * and the others then find the steps recorded. Returns the versions this call applied.
 */
export async function migrate(
  pool: Pool,
  schema: string,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  if (!SCHEMA_NAME.test(schema)) throw new Error(`schema name '${schema}' must match ${SCHEMA_NAME}.`);
  const client: PoolClient = await pool.connect();
  const lockKey = `nimbus:migrate:${schema}`;
  try {
    await client.query("SELECT pg_advisory_lock(hashtextextended($1, 0))", [lockKey]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.nimbus_schema_migrations (
           version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`,
      );
      const done = new Set(
        (await client.query(`SELECT version FROM ${schema}.nimbus_schema_migrations`)).rows.map((r) =>
          Number(r.version),
        ),
      );
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(m.version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(`SET LOCAL search_path TO ${schema}`);
          await client.query(m.sql);
          await client.query("INSERT INTO nimbus_schema_migrations (version, name) VALUES ($1, $2)", [
            m.version,
            m.name,
          ]);
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK");
          throw new Error(`schema migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
        applied.push(m.version);
      }
      return applied;
    } finally {
      await client.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [lockKey]);
    }
  } finally {
    client.release();
  }
}
