/**
 * Batches invocation records and log lines into the store (one transaction per flush, off
 * the hot path) and fans new log lines out to `logs --follow` subscribers.
 *
 * One bad row never costs the batch: rows are coerced to their column types on the way in,
 * and a batch the store refuses anyway is written again row by row, the rows it still
 * refuses counted ({@link Recorder.rejected}) and reported.
 */
import { ERROR_CATALOGUE, type ErrorCode } from "../errors.ts";
import type { InstanceSample } from "../observability/rollup.ts";
import { cutLogLine } from "../runtime/protocol.ts";
import type { InvocationRecord, LogRecord, Store } from "../store/types.ts";

const LEVELS = new Set(["debug", "info", "warn", "error"]);

function num(v: unknown, fallback = 0): number {
  return typeof v === "number" && Number.isFinite(v) ? v : fallback;
}

function str(v: unknown, max = 256): string {
  const s = typeof v === "string" ? v : v === undefined || v === null ? "" : String(v);
  return s.length > max ? s.slice(0, max) : s;
}

/** A log line with every field of its column's type (a message cut at 256 KB characters). */
export function cleanLog(line: LogRecord): LogRecord {
  let msg: string;
  try {
    msg = typeof line.msg === "string" ? line.msg : (JSON.stringify(line.msg) ?? String(line.msg));
  } catch {
    msg = Object.prototype.toString.call(line.msg);
  }
  msg = cutLogLine(msg);
  return {
    tenant: str(line.tenant),
    fn: str(line.fn),
    version: num(line.version),
    invocationId:
      line.invocationId === null || line.invocationId === undefined ? null : str(line.invocationId),
    t: Math.round(num(line.t, Date.now())),
    level: LEVELS.has(line.level) ? line.level : "info",
    msg,
  };
}

/** An invocation record with every field of its column's type. */
export function cleanInvocation(r: InvocationRecord): InvocationRecord {
  return {
    id: str(r.id),
    tenant: str(r.tenant),
    fn: str(r.fn),
    version: num(r.version),
    trigger: str(r.trigger),
    start: num(r.start, Date.now()),
    durationMs: num(r.durationMs),
    billedMs: num(r.billedMs),
    memoryMB: num(r.memoryMB),
    gbSeconds: num(r.gbSeconds),
    cpuMs: num(r.cpuMs),
    coldStart: Boolean(r.coldStart),
    status: num(r.status),
    errorCode: r.errorCode === null || r.errorCode === undefined ? null : str(r.errorCode),
    firstByteMs: optNum(r.firstByteMs),
    eventId: r.eventId === null || r.eventId === undefined ? null : str(r.eventId),
    attempt: optNum(r.attempt),
    queueWaitMs: optNum(r.queueWaitMs),
    e2eMs: optNum(r.e2eMs),
    acquireMs: optNum(r.acquireMs),
  };
}

function optNum(v: unknown): number | null {
  return v === null || v === undefined ? null : num(v);
}

/** A subscriber to one function's new log lines. */
export type LogListener = (line: LogRecord) => void;

/** The recorder. */
export class Recorder {
  private invocations: InvocationRecord[] = [];
  private logs: LogRecord[] = [];
  private readonly listeners = new Map<string, Set<LogListener>>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private readonly store: Store;
  private readonly onError: (err: unknown) => void;
  /** Rows the store refused even one by one (lost), since start. */
  rejected = 0;
  /** Sees every batch of invocation records before it is written (metrics: off the hot path). */
  onRecords: ((records: readonly InvocationRecord[]) => void) | undefined;
  /**
   * Called (off the request path, at flush) for each record whose error is the platform's
   * (a `system` class code), so the platform log names the invocation id.
   */
  onSystemError: ((r: InvocationRecord) => void) | undefined;
  /** Instance counts to add to the rollup, taken at most every {@link Recorder.sampleEveryMs}. */
  sampler: (() => InstanceSample[]) | undefined;
  /** @default 10000 */
  sampleEveryMs = 10_000;
  private lastSample = 0;

  /**
   * @param flushMs how often buffered records are written. @default 100
   */
  constructor(store: Store, onError: (err: unknown) => void, flushMs = 100) {
    this.store = store;
    this.onError = onError;
    this.timer = setInterval(() => void this.flush(), flushMs);
    this.timer.unref();
  }

  record(r: InvocationRecord): void {
    this.invocations.push(cleanInvocation(r));
    if (this.invocations.length >= 5000) void this.flush();
  }

  log(line: LogRecord): void {
    line = cleanLog(line);
    this.logs.push(line);
    const subs = this.listeners.get(`${line.tenant}/${line.fn}`);
    if (subs) for (const s of subs) s(line);
    if (this.logs.length >= 5000) void this.flush();
  }

  /** Subscribes to new lines of a function; returns the unsubscribe function. */
  follow(tenant: string, fn: string, listener: LogListener): () => void {
    const key = `${tenant}/${fn}`;
    let set = this.listeners.get(key);
    if (!set) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(key);
    };
  }

  /** Writes everything buffered now. */
  flush(): Promise<void> {
    const inv = this.invocations;
    const logs = this.logs;
    const now = Date.now();
    let samples: InstanceSample[] = [];
    if (this.sampler && now - this.lastSample >= this.sampleEveryMs) {
      this.lastSample = now;
      samples = this.sampler();
    }
    if (inv.length === 0 && logs.length === 0 && samples.length === 0) return this.flushing;
    this.invocations = [];
    this.logs = [];
    if (inv.length > 0 && this.onRecords) {
      try {
        this.onRecords(inv);
      } catch (err) {
        this.onError(err);
      }
    }
    if (this.onSystemError) {
      for (const r of inv) {
        const spec = r.errorCode ? ERROR_CATALOGUE[r.errorCode as ErrorCode] : undefined;
        if (spec?.class === "system") this.onSystemError(r);
      }
    }
    this.flushing = this.flushing.then(() => this.write(inv, logs, samples)).catch(this.onError);
    return this.flushing;
  }

  /** Writes a batch; if the store refuses it, row by row, so one bad row loses only itself. */
  private async write(inv: InvocationRecord[], logs: LogRecord[], samples: InstanceSample[]): Promise<void> {
    try {
      await this.store.writeBatch(inv, logs, samples);
      return;
    } catch (err) {
      if (inv.length + logs.length === 1) {
        this.rejected++;
        throw err;
      }
    }
    let lost = 0;
    let first: unknown;
    for (const r of inv) {
      try {
        await this.store.writeBatch([r], []);
      } catch (err) {
        lost++;
        first ??= err;
      }
    }
    for (const l of logs) {
      try {
        await this.store.writeBatch([], [l]);
      } catch (err) {
        lost++;
        first ??= err;
      }
    }
    if (lost > 0) {
      this.rejected += lost;
      throw new Error(
        `the store refused ${lost} of ${inv.length + logs.length} rows of a batch (the others were written): ${String(first)}`,
        { cause: first },
      );
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
