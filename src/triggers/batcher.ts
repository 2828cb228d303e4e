/**
 * Collects broker messages into batches (`batchSize`, or whatever arrived within
 * `maxWaitMs`), stores at most `concurrency` batches at once, and settles each message: once
 * its batch is stored (MQTT QoS 0, core NATS), or once the batch's event reached its terminal
 * outcome (MQTT QoS 1, JetStream: the broker keeps the message until then). A failed store is
 * retried with backoff (the messages stay unacknowledged meanwhile). At most `maxUnsettled`
 * messages are held (waiting, being stored, or waiting for their outcome); past it `push`
 * refuses, so a broker that ignores its flow-control limit cannot make us buffer more.
 */
import { MAX_BATCH_BYTES } from "./config.ts";
import type { BatchSink, Incoming, StoredBatch, TriggerStatus } from "./types.ts";

/** Batcher settings. */
export interface BatcherOptions {
  batchSize: number;
  /** Payload bytes per batch, at most (a single larger message still goes alone). */
  maxBatchBytes: number;
  maxWaitMs: number;
  concurrency: number;
  /** Messages held and not yet settled (waiting, being stored, waiting for their outcome), at most. */
  maxUnsettled: number;
  sink: BatchSink;
  /** A store failed (it is retried). */
  onError: (err: unknown) => void;
  /** A batch was stored. */
  onStored: (n: number) => void;
  /** Messages were acknowledged to the broker after their event's outcome. */
  onAcked?: (n: number) => void;
}

/** The batcher. */
export class Batcher {
  private readonly o: BatcherOptions;
  private buf: Incoming[] = [];
  private timer: NodeJS.Timeout | undefined;
  private due = false;
  private inflight = 0;
  private unsettled = 0;
  private closed = false;
  private readonly running = new Set<Promise<void>>();
  private readonly wakers = new Set<() => void>();
  /** Producers waiting for room (see `whenRoom`). */
  private readonly roomWaiters = new Set<() => void>();
  /** Stored batches whose messages wait for the event's outcome. */
  private readonly awaiting = new Map<Incoming[], StoredBatch>();

  constructor(o: BatcherOptions) {
    this.o = o;
  }

  /** Messages held and not yet settled. */
  get size(): number {
    return this.unsettled;
  }

  /**
   * Resolves once a message can be pushed again (a held one settled) or the batcher closed:
   * a QoS 1 message over the bound waits here instead of being dropped.
   */
  whenRoom(): Promise<void> {
    if (this.closed || this.unsettled < this.o.maxUnsettled) return Promise.resolve();
    return new Promise((r) => this.roomWaiters.add(r));
  }

  private wakeRoom(): void {
    const waiters = [...this.roomWaiters];
    this.roomWaiters.clear();
    for (const w of waiters) w();
  }

  /** Adds a message; false (and the message untouched) when the batcher is full or closed. */
  push(m: Incoming): boolean {
    if (this.closed || this.unsettled >= this.o.maxUnsettled) return false;
    this.unsettled++;
    let settled = false;
    this.buf.push({
      ...m,
      settle: (ok) => {
        if (settled) return;
        settled = true;
        this.unsettled--;
        if (ok && m.ackOnOutcome) this.o.onAcked?.(1);
        m.settle(ok);
        this.wakeRoom();
      },
    });
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
      let stored: StoredBatch;
      try {
        stored = await this.o.sink(batch);
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
        continue;
      }
      this.o.onStored(batch.length);
      const later = batch.filter((m) => m.ackOnOutcome);
      for (const m of batch) if (!m.ackOnOutcome) m.settle(true);
      if (later.length > 0) this.awaitOutcome(later, stored);
      return;
    }
    for (const m of batch) m.settle(false);
  }

  private awaitOutcome(msgs: Incoming[], stored: StoredBatch): void {
    if (this.closed) {
      stored.cancel();
      for (const m of msgs) m.settle(false);
      return;
    }
    this.awaiting.set(msgs, stored);
    stored.outcome().then(
      () => {
        this.awaiting.delete(msgs);
        for (const m of msgs) m.settle(true);
      },
      (err: unknown) => {
        this.awaiting.delete(msgs);
        this.o.onError(err);
        for (const m of msgs) m.settle(false);
      },
    );
  }

  /**
   * Stops: waiting messages, and stored ones whose outcome is not known yet, are settled
   * false (not acknowledged: the broker redelivers them); running stores finish first.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of [...this.wakers]) w();
    this.wakeRoom();
    for (const m of this.buf.splice(0)) m.settle(false);
    await Promise.allSettled([...this.running]);
    for (const [msgs, stored] of this.awaiting) {
      stored.cancel();
      for (const m of msgs) m.settle(false);
    }
    this.awaiting.clear();
  }
}

/**
 * The batcher of one trigger: its batch size, wait and concurrency from the trigger's config,
 * batches cut to fit one durable event, counts kept in the trigger's status.
 */
export function triggerBatcher(
  t: { batchSize: number; maxWaitMs: number; concurrency: number },
  maxUnsettled: number,
  sink: BatchSink,
  status: TriggerStatus,
  error: (why: string) => void,
): Batcher {
  return new Batcher({
    batchSize: t.batchSize,
    maxBatchBytes: MAX_BATCH_BYTES,
    maxWaitMs: t.maxWaitMs,
    concurrency: t.concurrency,
    maxUnsettled,
    sink,
    onError: (err) => error(`storing a batch failed (retrying): ${String(err)}`),
    onStored: (n) => {
      status.stored += n;
    },
    onAcked: (n) => {
      status.acked += n;
    },
  });
}
