/**
 * Row mapping shared by the SQL stores: the column order of an invocation record and how a
 * database row (snake_case columns) becomes a record. SQLite returns numbers, PostgreSQL
 * returns BIGINT as strings, so every numeric column goes through `Number`.
 */
import { decodeHist, encodeHist, type RollupRow } from "../observability/rollup.ts";
import type { FunctionRecord, InvocationRecord, QueueRecord, VersionRecord } from "./types.ts";

/** A row as a driver returns it. */
export type Row = Record<string, unknown>;

const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** The invocation columns, in the order {@link invocationValues} gives their values. */
export const INVOCATION_COLUMNS =
  "id, tenant, fn, version, trigger, start, duration_ms, billed_ms, memory_mb, gb_seconds, cpu_ms, cold_start, status, error_code, first_byte_ms, event_id, attempt, queue_wait_ms, e2e_ms, acquire_ms";

/** How many {@link INVOCATION_COLUMNS} there are. */
export const INVOCATION_COLUMN_COUNT = 20;

/** An invocation's values in column order; `coldStart` as the database stores booleans. */
export function invocationValues<B>(
  r: InvocationRecord,
  bool: (b: boolean) => B,
): (string | number | null | B)[] {
  return [
    r.id,
    r.tenant,
    r.fn,
    r.version,
    r.trigger,
    r.start,
    r.durationMs,
    r.billedMs,
    r.memoryMB,
    r.gbSeconds,
    r.cpuMs,
    bool(r.coldStart),
    r.status,
    r.errorCode,
    r.firstByteMs,
    r.eventId ?? null,
    r.attempt ?? null,
    r.queueWaitMs ?? null,
    r.e2eMs ?? null,
    r.acquireMs ?? null,
  ];
}

/** The WHERE fragment (` AND …`, or nothing) keeping only successes or failures. */
export function outcomeFilter(outcome?: "ok" | "error"): string {
  if (outcome === "ok") return " AND error_code IS NULL";
  return outcome === "error" ? " AND error_code IS NOT NULL" : "";
}

/** A version row; `config` is parsed JSON text (SQLite) or already an object (PostgreSQL JSONB). */
export function toVersion(r: Row): VersionRecord {
  return {
    tenant: String(r.tenant),
    name: String(r.name),
    version: Number(r.version),
    hash: String(r.hash),
    executor: r.executor as VersionRecord["executor"],
    config: (typeof r.config === "string" ? JSON.parse(r.config) : r.config) as VersionRecord["config"],
    codeDir: String(r.code_dir),
    sizeBytes: Number(r.size_bytes),
    createdAt: Number(r.created_at),
  };
}

/** An invocation row. */
export function toInvocation(r: Row): InvocationRecord {
  return {
    id: String(r.id),
    tenant: String(r.tenant),
    fn: String(r.fn),
    version: Number(r.version),
    trigger: String(r.trigger),
    start: Number(r.start),
    durationMs: Number(r.duration_ms),
    billedMs: Number(r.billed_ms),
    memoryMB: Number(r.memory_mb),
    gbSeconds: Number(r.gb_seconds),
    cpuMs: Number(r.cpu_ms),
    coldStart: Boolean(r.cold_start),
    status: Number(r.status),
    errorCode: (r.error_code as string | null) ?? null,
    firstByteMs: numOrNull(r.first_byte_ms),
    eventId: (r.event_id as string | null) ?? null,
    attempt: numOrNull(r.attempt),
    queueWaitMs: numOrNull(r.queue_wait_ms),
    e2eMs: numOrNull(r.e2e_ms),
    acquireMs: numOrNull(r.acquire_ms),
  };
}

/** A function row. */
export function toFunction(r: Row): FunctionRecord {
  return {
    tenant: String(r.tenant),
    name: String(r.name),
    latest: Number(r.latest),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

/** A named queue's row. */
export function toQueue(r: Row): QueueRecord {
  return {
    tenant: String(r.tenant),
    name: String(r.name),
    maxRetries: Number(r.max_retries),
    dlq: r.dlq === null || r.dlq === undefined ? null : String(r.dlq),
    retentionMs: Number(r.retention_ms),
    maxBacklog: Number(r.max_backlog),
    createdAt: Number(r.created_at),
  };
}

/** A named queue's values in the column order `tenant, name, max_retries, dlq, retention_ms, max_backlog, created_at`. */
export function queueValues(q: QueueRecord): (string | number | null)[] {
  return [q.tenant, q.name, q.maxRetries, q.dlq, q.retentionMs, q.maxBacklog, q.createdAt];
}

/** The rollup columns after `tenant, fn, res, t`, in the order {@link rollupValues} gives them. */
export const ROLLUP_VALUE_COLUMNS =
  "requests, errors, refused, cold, duration_ms, gb_seconds, cpu_ms, billed_ms, instances, hist";

/** A rollup row's values for {@link ROLLUP_VALUE_COLUMNS}; the histogram as its encoded text. */
export function rollupValues(r: RollupRow): (number | string)[] {
  return [
    r.requests,
    r.errors,
    r.refused,
    r.cold,
    r.durationMs,
    r.gbSeconds,
    r.cpuMs,
    r.billedMs,
    r.instances,
    encodeHist(r.hist),
  ];
}

/** A rollup row (the histogram column holds `encodeHist` text). */
export function toRollupRow(r: Row): RollupRow {
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
    hist: decodeHist(r.hist as string | null),
  };
}
