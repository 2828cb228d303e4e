/**
 * The embedded Queue on `node:sqlite`: its own database file in WAL mode with
 * `synchronous = FULL` (every commit is fsync'd), so an acknowledged enqueue survives a
 * crash of the process or the machine.
 *
 * Group commit: every operation (enqueue, lease, ack, …) made during one event-loop turn
 * joins one batch, applied in one transaction on the queue's writer thread; callers'
 * promises resolve only after that commit. While a batch commits, the next turns' operations
 * gather into the next batch, so a thousand enqueues cost one fsync and the event loop
 * never waits on the disk.
 */
import { randomUUID } from "node:crypto";
import { Worker } from "node:worker_threads";
import {
  type EnqueueInput,
  type EnqueueResult,
  type LeasedMessage,
  type MessageInfo,
  type MessageState,
  type Queue,
  QueueFullError,
  type QueueOptions,
  type QueueOverview,
  type QueueStats,
} from "../types.ts";
import { type Op, type OpResult, QueueEngine } from "./engine.ts";

interface Pending {
  op: Op;
  resolve: (v: any) => void;
  reject: (e: unknown) => void;
}

/** Options of the SQLite queue. */
export interface SqliteQueueOptions extends QueueOptions {
  /**
   * Commit on a worker thread (the default for files) or on the calling thread (the default
   * for `:memory:`, and for tests).
   */
  thread?: boolean;
}

/** The SQLite queue. */
export class SqliteQueue implements Queue {
  private readonly clock: () => number;
  private readonly maxDepth: number;
  private readonly dedupWindowMs: number;
  private readonly retentionMs: number;
  private readonly engine: QueueEngine | undefined;
  private readonly worker: Worker | undefined;
  private pending: Pending[] = [];
  private inFlight: Pending[] | undefined;
  private scheduled = false;
  private closed = false;
  private batchSeq = 0;
  private readonly pruneTimer: NodeJS.Timeout;
  private idle: (() => void) | undefined;

  /** Opens (creating if needed) the queue database at `file` (`:memory:` for tests). */
  constructor(file: string, opts: SqliteQueueOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.maxDepth = opts.maxDepth ?? 100_000;
    this.dedupWindowMs = opts.dedupWindowMs ?? 86_400_000;
    this.retentionMs = opts.retentionMs ?? 86_400_000;
    if (opts.thread ?? file !== ":memory:") {
      this.worker = new Worker(new URL("./worker.ts", import.meta.url), { workerData: { file } });
      this.worker.unref();
      this.worker.on("message", this.onReply);
      this.worker.on("error", (err) => this.failInFlight(err));
    } else {
      this.engine = new QueueEngine(file);
    }
    this.pruneTimer = setInterval(() => {
      this.prune().catch(() => {});
    }, 60_000);
    this.pruneTimer.unref();
  }

  private run<T>(op: Op): Promise<T> {
    if (this.closed) return Promise.reject(new Error("The queue is closed."));
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, resolve, reject });
      if (!this.scheduled && !this.inFlight) {
        this.scheduled = true;
        setImmediate(this.flush);
      }
    });
  }

  private static settle(batch: Pending[], results: OpResult[]): void {
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      const p = batch[i]!;
      if (r.ok) p.resolve(r.value);
      else if (r.full) p.reject(new QueueFullError(r.full.queue, r.full.depth));
      else p.reject(new Error(r.message));
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    if (this.inFlight || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    if (this.engine) {
      let results: OpResult[];
      try {
        results = this.engine.runBatch(batch.map((p) => p.op));
      } catch (err) {
        for (const p of batch) p.reject(err);
        return;
      }
      SqliteQueue.settle(batch, results);
      return;
    }
    this.inFlight = batch;
    this.worker!.ref();
    this.worker!.postMessage({ id: ++this.batchSeq, ops: batch.map((p) => p.op) });
  };

  private readonly onReply = (m: {
    id?: number;
    results?: OpResult[];
    error?: string;
    closed?: true;
  }): void => {
    if (m.closed) return;
    const batch = this.inFlight ?? [];
    this.inFlight = undefined;
    this.worker!.unref();
    if (m.error !== undefined) for (const p of batch) p.reject(new Error(`queue commit failed: ${m.error}`));
    else SqliteQueue.settle(batch, m.results ?? []);
    // What gathered while that batch committed goes now, as one batch.
    if (this.pending.length > 0) this.flush();
    else this.idle?.();
  };

  private failInFlight(err: unknown): void {
    const batch = [...(this.inFlight ?? []), ...this.pending];
    this.inFlight = undefined;
    this.pending = [];
    for (const p of batch) p.reject(err);
  }

  enqueue(queue: string, items: EnqueueInput[], opts: { maxDepth?: number } = {}): Promise<EnqueueResult[]> {
    return this.run({
      t: "enqueue",
      queue,
      now: this.clock(),
      maxDepth: opts.maxDepth ?? this.maxDepth,
      dedupWindowMs: this.dedupWindowMs,
      items: items.map((i) => ({
        id: i.id ?? randomUUID(),
        body: i.body,
        meta: i.meta ?? "{}",
        delayMs: i.delayMs ?? 0,
        dedupKey: i.dedupKey ?? null,
      })),
    });
  }

  async lease(queue: string, max: number, leaseMs: number): Promise<LeasedMessage[]> {
    if (max <= 0) return [];
    const rows = await this.run<(Omit<LeasedMessage, "body"> & { body: Uint8Array })[]>({
      t: "lease",
      queue,
      now: this.clock(),
      max,
      leaseMs,
    });
    return rows.map((r) => ({
      ...r,
      body: Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength),
    }));
  }

  extend(id: string, token: string, leaseMs: number): Promise<boolean> {
    return this.run({ t: "extend", id, token, now: this.clock(), leaseMs });
  }

  ack(id: string, token: string, result?: string): Promise<boolean> {
    return this.run({ t: "ack", id, token, now: this.clock(), result: result ?? null });
  }

  nack(
    id: string,
    token: string,
    delayMs: number,
    error: string,
    opts: { uncount?: boolean } = {},
  ): Promise<boolean> {
    return this.run({
      t: "nack",
      id,
      token,
      now: this.clock(),
      delayMs,
      error,
      uncount: opts.uncount ?? false,
    });
  }

  deadLetter(id: string, token: string, error: string, reason: "failed" | "expired"): Promise<boolean> {
    return this.run({ t: "dead", id, token, now: this.clock(), error, reason });
  }

  get(id: string): Promise<MessageInfo | undefined> {
    return this.run({ t: "get", id });
  }

  list(queue: string, opts: { state?: MessageState; limit?: number } = {}): Promise<MessageInfo[]> {
    const limit = Math.min(Math.max(1, opts.limit ?? 100), 10_000);
    return this.run({ t: "list", queue, state: opts.state ?? null, limit });
  }

  async body(id: string): Promise<Buffer | undefined> {
    const b = await this.run<Uint8Array | undefined>({ t: "body", id });
    return b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : undefined;
  }

  redrive(queue: string, ids?: string[]): Promise<number> {
    return this.run({ t: "redrive", queue, now: this.clock(), ids: ids ?? null });
  }

  purge(queue: string, which: "dead" | "ready"): Promise<number> {
    return this.run({ t: "purge", queue, which });
  }

  stats(queue: string): Promise<QueueStats> {
    return this.run({ t: "stats", queue, now: this.clock() });
  }

  queuesWithWork(): Promise<string[]> {
    return this.run({ t: "work" });
  }

  overview(): Promise<QueueOverview[]> {
    return this.run({ t: "overview", now: this.clock() });
  }

  /** Deletes succeeded messages older than the retention window. */
  prune(): Promise<number> {
    return this.run({ t: "prune", before: this.clock() - this.retentionMs });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.pruneTimer);
    // Commit what is queued, then refuse more.
    if (this.engine) {
      this.flush();
      this.closed = true;
      this.engine.close();
      return;
    }
    if (this.inFlight || this.pending.length > 0) {
      await new Promise<void>((r) => {
        this.idle = r;
        if (!this.inFlight) this.flush();
      });
    }
    this.closed = true;
    await this.worker!.terminate();
  }
}
