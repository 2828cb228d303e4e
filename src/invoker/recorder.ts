/**
 * Batches invocation records and log lines into the store (one transaction per flush, off
 * the hot path) and fans new log lines out to `logs --follow` subscribers.
 */
import type { InvocationRecord, LogRecord, Store } from "../store/types.ts";

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
    this.invocations.push(r);
    if (this.invocations.length >= 5000) void this.flush();
  }

  log(line: LogRecord): void {
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
    if (inv.length === 0 && logs.length === 0) return this.flushing;
    this.invocations = [];
    this.logs = [];
    this.flushing = this.flushing.then(() => this.store.writeBatch(inv, logs)).catch(this.onError);
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
