/**
 * The Store seam: durable records of functions, versions, invocations, logs and keys.
 * `sqlite` (embedded default) and `postgres` (cluster mode) implement it; both pass the
 * contract suite in `./contract.ts`.
 * Every method is async so both can implement it.
 */
import type { FunctionConfig } from "../build/config.ts";
import type { ExecutorKind } from "../executors/types.ts";
import type { InstanceSample, RollupRow } from "../observability/rollup.ts";

/** A deployed function. */
export interface FunctionRecord {
  tenant: string;
  name: string;
  /** The version `latest` points at. */
  latest: number;
  createdAt: number;
  updatedAt: number;
}

/** An immutable version of a function. */
export interface VersionRecord {
  tenant: string;
  name: string;
  version: number;
  /** sha256 of bundle + config. */
  hash: string;
  executor: ExecutorKind;
  config: FunctionConfig;
  /** Host directory holding the bundle. */
  codeDir: string;
  sizeBytes: number;
  createdAt: number;
}

/** One invocation's record. */
export interface InvocationRecord {
  id: string;
  tenant: string;
  fn: string;
  version: number;
  trigger: string;
  /** Start, ms since the epoch. */
  start: number;
  durationMs: number;
  billedMs: number;
  memoryMB: number;
  gbSeconds: number;
  cpuMs: number;
  coldStart: boolean;
  status: number;
  errorCode: string | null;
  /** Time to the first response byte, ms. */
  firstByteMs: number | null;
  /** The async event (invocation id given at enqueue) this attempt served; null for sync calls. */
  eventId?: string | null;
  /** Which delivery attempt of the event this was (1 = first). */
  attempt?: number | null;
  /** Time the event waited between enqueue and this attempt, ms. */
  queueWaitMs?: number | null;
  /** Enqueue to the end of this attempt, ms. */
  e2eMs?: number | null;
  /** Start to holding an instance (waiting for one, or starting it on a cold start), ms. */
  acquireMs?: number | null;
}

/** One captured log line. */
export interface LogRecord {
  seq?: number;
  tenant: string;
  fn: string;
  version: number;
  invocationId: string | null;
  t: number;
  level: string;
  msg: string;
}

/** Usage aggregated per function over a period. */
export interface UsageRow {
  fn: string;
  /** Invocations that ran on an instance (billed). */
  requests: number;
  /** Of those, how many failed. */
  errors: number;
  /** Requests refused before running (throttled, shutting down): not billed. */
  refused: number;
  gbSeconds: number;
  cpuMs: number;
  billedMs: number;
}

/** A named queue (`nimbus queue create`). Its messages live in the Queue as `q/<tenant>/<name>`. */
export interface QueueRecord {
  tenant: string;
  name: string;
  /** Retries after a message's first failed delivery, unless its consumer says otherwise. */
  maxRetries: number;
  /** Queue its dead messages move to; null: they stay dead in this queue (`queue dlq ls`). */
  dlq: string | null;
  /** Messages older than this are not delivered any more (dead, reason `expired`), ms. */
  retentionMs: number;
  /** Undelivered messages at most; sends past it get 429 NIMBUS_QUEUE_FULL. */
  maxBacklog: number;
  createdAt: number;
}

/** An API key (hashed). */
export interface ApiKeyRecord {
  id: string;
  tenant: string;
  hash: string;
  scopes: string[];
  createdAt: number;
}

/** Filters for listing logs. */
export interface LogQuery {
  tenant: string;
  fn: string;
  /** Only lines with seq greater than this. */
  afterSeq?: number;
  invocationId?: string;
  since?: number;
  limit?: number;
  /** Only lines of these levels. */
  levels?: string[];
  /** Only lines whose message contains this text (case-insensitive). */
  text?: string;
}

/** The durable store. */
export interface Store {
  listFunctions(tenant: string): Promise<FunctionRecord[]>;
  getFunction(tenant: string, name: string): Promise<FunctionRecord | undefined>;
  /** Deletes a function, its versions, logs and records. */
  deleteFunction(tenant: string, name: string): Promise<void>;
  listVersions(tenant: string, name: string): Promise<VersionRecord[]>;
  getVersion(tenant: string, name: string, version: number): Promise<VersionRecord | undefined>;
  findVersionByHash(tenant: string, name: string, hash: string): Promise<VersionRecord | undefined>;
  /**
   * Adds the next version (number assigned here, 1, 2, 3… per function, atomically across
   * nodes) and points `latest` at it. When a version with the same `hash` exists (identical
   * code, possibly deployed by another node at the same moment), returns that version instead
   * and points `latest` at it.
   */
  addVersion(v: Omit<VersionRecord, "version">): Promise<VersionRecord>;
  setLatest(tenant: string, name: string, version: number): Promise<void>;
  /**
   * Writes invocation records and log lines in one transaction, and adds the records (and
   * any instance samples) to the per-minute rollup in the same transaction.
   */
  writeBatch(invocations: InvocationRecord[], logs: LogRecord[], samples?: InstanceSample[]): Promise<void>;
  /** A function's newest records; `outcome` keeps only successes (no error code) or failures. */
  listInvocations(
    tenant: string,
    fn: string,
    limit: number,
    outcome?: "ok" | "error",
  ): Promise<InvocationRecord[]>;
  /** One invocation record by id. */
  getInvocation(tenant: string, id: string): Promise<InvocationRecord | undefined>;
  /** Rollup rows of a tenant's functions (or one function) with `from <= t < to`. */
  rollup(tenant: string, fn: string | undefined, from: number, to: number): Promise<RollupRow[]>;
  /**
   * Rollup retention: minutes older than `minuteKeepMs` fold into hours, hours older than
   * `hourKeepMs` go. Returns the rows removed.
   */
  compactRollup(now: number, minuteKeepMs: number, hourKeepMs: number): Promise<number>;
  listLogs(q: LogQuery): Promise<LogRecord[]>;
  /**
   * Log retention: deletes lines older than `olderThan` (ms since the epoch), then the oldest
   * lines of every function whose lines hold more than `maxCharsPerFunction` characters.
   * Returns the number of lines deleted.
   */
  pruneLogs(olderThan: number, maxCharsPerFunction: number): Promise<number>;
  usage(tenant: string, from: number, to: number): Promise<UsageRow[]>;
  addApiKey(k: ApiKeyRecord): Promise<void>;
  /** Creates or replaces a named queue's definition. */
  putQueue(q: QueueRecord): Promise<void>;
  getQueue(tenant: string, name: string): Promise<QueueRecord | undefined>;
  listQueues(tenant: string): Promise<QueueRecord[]>;
  deleteQueue(tenant: string, name: string): Promise<void>;
  findApiKey(hash: string): Promise<ApiKeyRecord | undefined>;
  close(): Promise<void>;
}
