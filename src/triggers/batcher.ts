/**
 * Collects broker messages into batches (`batchSize`, or whatever arrived within
 * `maxWaitMs`), stores at most `concurrency` batches at once, and settles each message after
 * its batch is stored. A failed store is retried with backoff (the messages stay
 * unacknowledged meanwhile); past `maxBuffered` waiting messages, `push` refuses.
 */
import { MAX_BATCH_BYTES } from "./config.ts";
import type { BatchSink, Incoming, TriggerStatus } from "./types.ts";

/** Batcher settings. */
export interface BatcherOptions {
  batchSize: number;
  /** Payload bytes per batch, at most (a single larger message still goes alone). */
  maxBatchBytes: number;
  maxWaitMs: number;
  concurrency: number;
  /** Messages waiting (not yet in a batch being stored), at most. */
  maxBuffered: number;
  sink: BatchSink;
  /** A store failed (it is retried). */
  onError: (err: unknown) => void;
  /** A batch was stored. */
  onStored: (n: number) => void;
}

/** The batcher. */
export class Batcher {
  private readonly o: BatcherOptions;
  private buf: Incoming[] = [];
  private timer: NodeJS.Timeout | undefined;
  private due = false;
  private inflight = 0;
  private closed = false;
  private readonly running = new Set<Promise<void>>();
  private readonly wakers = new Set<() => void>();

  constructor(o: BatcherOptions) {
    this.o = o;
  }

  /** Messages waiting plus those in batches being stored. */
  get size(): number {
    return this.buf.length;
  }

  /** Adds a message; false (and the message untouched) when the buffer is full or closed. */
  push(m: Incoming): boolean {
    if (this.closed || this.buf.length >= this.o.maxBuffered) return false;
    this.buf.push(m);
    this.pump();
    return true;
  }

  private pump(): void {
    while (
      !this.closed &&
      this.inflight < this.o.concurrency &&
      (this.buf.length >= this.o.batchSize || (this.due && this.buf.length > 0))
    ) {
      let n = 0;
      let bytes = 0;
      while (n < this.buf.length && n < this.o.batchSize) {
        bytes += this.buf[n]!.data.length;
        if (n > 0 && bytes > this.o.maxBatchBytes) break;
        n++;
      }
      const batch = this.buf.splice(0, n);
      if (this.buf.length === 0) this.due = false;
      this.inflight++;
      const p = this.store(batch).finally(() => {
        this.inflight--;
        this.running.delete(p);
        this.pump();
      });
      this.running.add(p);
    }
    if (this.buf.length === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.due = false;
    } else if (!this.timer && !this.due) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.due = true;
        this.pump();
      }, this.o.maxWaitMs);
    }
  }

  private async store(batch: Incoming[]): Promise<void> {
    let delay = 250;
    while (!this.closed) {
      try {
        await this.o.sink(batch);
        this.o.onStored(batch.length);
        for (const m of batch) m.settle(true);
        return;
      } catch (err) {
        this.o.onError(err);
        await new Promise<void>((r) => {
          const wake = () => {
            clearTimeout(t);
            this.wakers.delete(wake);
            r();
          };
          const t = setTimeout(wake, delay * (0.5 + Math.random() / 2));
          this.wakers.add(wake);
        });
        delay = Math.min(delay * 2, 30_000);
      }
    }
    for (const m of batch) m.settle(false);
  }

  /** Stops: waiting messages are settled false (the broker redelivers them), running stores finish. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of [...this.wakers]) w();
    for (const m of this.buf.splice(0)) m.settle(false);
    await Promise.allSettled([...this.running]);
  }
}

/**
 * The batcher of one trigger: its batch size, wait and concurrency from the trigger's config,
 * batches cut to fit one durable event, stored counts kept in the trigger's status.
 */
export function triggerBatcher(
  t: { batchSize: number; maxWaitMs: number; concurrency: number },
  maxBuffered: number,
  sink: BatchSink,
  status: TriggerStatus,
  error: (why: string) => void,
): Batcher {
  return new Batcher({
    batchSize: t.batchSize,
    maxBatchBytes: MAX_BATCH_BYTES,
    maxWaitMs: t.maxWaitMs,
    concurrency: t.concurrency,
    maxBuffered,
    sink,
    onError: (err) => error(`storing a batch failed (retrying): ${String(err)}`),
    onStored: (n) => {
      status.stored += n;
    },
  });
}
