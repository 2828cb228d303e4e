/**
 * Consumers of named queues: every function whose latest version says
 * `queues.consumers: [{ queue: "jobs", … }]` drains that queue in batches (up to
 * `batchSize` messages, or fewer once the oldest waited `maxWait`), with at most
 * `concurrency` batches delivered at once. A batch goes through the invoker (metered,
 * logged and billed like HTTP calls, records say `trigger: "queue"`); then EACH message is
 * acked, retried with backoff (or the delay the function asked), or — out of retries —
 * dead-lettered (kept dead in its queue, and forwarded to the DLQ queue when there is one).
 *
 * A batch holds a lease (queue wait + timeout + grace): a crash mid-batch returns its
 * messages to the queue when the lease ends (at least once).
 */
import { NOT_RUN } from "../events/dispatcher.ts";
import { CollectingResponder, outcomeWithin } from "../events/responder.ts";
import { decideRetry } from "../events/retry.ts";
import type { Invoker } from "../invoker/invoker.ts";
import type { Registry } from "../invoker/registry.ts";
import type { LeasedMessage, Queue } from "../queue/types.ts";
import type { BatchWire } from "../runtime/batch.ts";
import type { VersionRecord } from "../store/types.ts";
import type { ConsumerConfig } from "./config.ts";
import { decideBatch } from "./outcome.ts";
import { type MessageMeta, type NamedQueues, QUEUE_DEFAULTS, queueKey } from "./service.ts";

/** Options of the consumers. */
export interface ConsumersOptions {
  queue: Queue;
  invoker: Invoker;
  registry: Registry;
  named: NamedQueues;
  log: (msg: string) => void;
  /** How long a request may wait for an instance, ms. @default 10000 */
  queueWaitMs?: number;
  /** Added to every lease beyond queue wait + timeout, ms. @default 5000 */
  leaseGraceMs?: number;
  /** First retry delay before jitter (a consumer's `retryDelay` overrides it), ms. @default 1000 */
  retryBaseMs?: number;
  /** How often queues are looked at (partial batches, delayed retries), ms. @default 200 */
  pollMs?: number;
  clock?: () => number;
}

/** What `queue info` shows per consumer. */
export interface ConsumerView {
  function: string;
  batchSize: number;
  maxWaitMs: number;
  maxRetries: number | null;
  deadLetterQueue: string | null;
  concurrency: number;
  /** Batches being delivered now. */
  inflight: number;
}

interface Binding {
  key: string;
  tenant: string;
  fn: string;
  cfg: ConsumerConfig;
  inflight: number;
  pumping: boolean;
  again: boolean;
  /** When a partial batch was first seen waiting (maxWait counts from here). */
  partialSince: number | undefined;
}

/** A batch's bodies (base64 in JSON) are cut here, so the INVOKE frame stays far below its cap. */
const MAX_BATCH_PAYLOAD = 4 * 1024 * 1024;

function metaOf(m: LeasedMessage): MessageMeta {
  try {
    return JSON.parse(m.meta) as MessageMeta;
  } catch {
    return { ct: "text", sender: "unknown" };
  }
}

/** Delivers named queues to their consumer functions. */
export class QueueConsumers {
  private readonly o: ConsumersOptions;
  private readonly clock: () => number;
  private readonly bindings = new Map<string, Binding>();
  private readonly running = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(o: ConsumersOptions) {
    this.o = o;
    this.clock = o.clock ?? Date.now;
  }

  /** Matches the consumers to every function's latest version (after a deploy or a delete). */
  sync(): void {
    const want = new Map<string, { tenant: string; fn: string; cfg: ConsumerConfig }>();
    for (const f of this.o.registry.all()) {
      const v = this.o.registry.getVersion(f.tenant, f.name, f.latest);
      for (const cfg of v?.config.queues?.consumers ?? []) {
        want.set(`${queueKey(f.tenant, cfg.queue)}|${f.name}`, { tenant: f.tenant, fn: f.name, cfg });
      }
    }
    for (const id of [...this.bindings.keys()]) if (!want.has(id)) this.bindings.delete(id);
    for (const [id, w] of want) {
      const b = this.bindings.get(id);
      if (b) b.cfg = w.cfg;
      else
        this.bindings.set(id, {
          key: queueKey(w.tenant, w.cfg.queue),
          tenant: w.tenant,
          fn: w.fn,
          cfg: w.cfg,
          inflight: 0,
          pumping: false,
          again: false,
          partialSince: undefined,
        });
    }
  }

  /** Starts polling (messages left from a previous run are delivered at once). */
  start(): void {
    this.sync();
    this.timer = setInterval(() => {
      for (const b of this.bindings.values()) void this.pump(b);
    }, this.o.pollMs ?? 200);
    this.timer.unref();
    for (const b of this.bindings.values()) void this.pump(b);
  }

  /** Wakes the consumers of a queue that just got messages. */
  kick(key: string): void {
    for (const b of this.bindings.values()) if (b.key === key) void this.pump(b);
  }

  /** The consumers of one queue. */
  list(tenant: string, name: string): ConsumerView[] {
    const key = queueKey(tenant, name);
    return [...this.bindings.values()]
      .filter((b) => b.key === key)
      .map((b) => ({
        function: b.fn,
        batchSize: b.cfg.batchSize,
        maxWaitMs: b.cfg.maxWaitMs,
        maxRetries: b.cfg.maxRetries ?? null,
        deadLetterQueue: b.cfg.deadLetterQueue ?? null,
        concurrency: b.cfg.concurrency,
        inflight: b.inflight,
      }));
  }

  private leaseMs(v: VersionRecord): number {
    return (this.o.queueWaitMs ?? 10_000) + v.config.timeoutMs + (this.o.leaseGraceMs ?? 5000);
  }

  private async pump(b: Binding): Promise<void> {
    if (this.closed) return;
    if (b.pumping) {
      b.again = true;
      return;
    }
    b.pumping = true;
    try {
      do {
        b.again = false;
        if (b.inflight >= b.cfg.concurrency || !this.bindings.has(`${b.key}|${b.fn}`)) break;
        const st = await this.o.queue.stats(b.key);
        // Leased messages count too: a lease whose holder died (a killed server, a lost
        // attempt) ends, and only a lease call hands the message out again.
        if (st.ready === 0 && st.leased === 0) {
          b.partialSince = undefined;
          break;
        }
        if (st.ready < b.cfg.batchSize) {
          // A partial batch waits up to maxWait for more (the poll timer comes back).
          const now = this.clock();
          b.partialSince ??= now;
          if (now - b.partialSince < b.cfg.maxWaitMs) break;
        }
        b.partialSince = undefined;
        let v: VersionRecord;
        try {
          v = this.o.invoker.resolve(b.tenant, b.fn);
        } catch {
          break; // deleted: the next sync drops the binding
        }
        const msgs = await this.o.queue.lease(b.key, b.cfg.batchSize, this.leaseMs(v));
        if (msgs.length === 0) break;
        b.inflight++;
        const p = this.deliver(b, v, msgs)
          .catch((err: unknown) =>
            this.o.log(`nimbus: delivering a batch of ${b.key} failed: ${String(err)}`),
          )
          .finally(() => {
            b.inflight--;
            this.running.delete(p);
            if (!this.closed) void this.pump(b);
          });
        this.running.add(p);
        b.again = true;
      } while (b.again && !this.closed);
    } catch (err) {
      this.o.log(`nimbus: leasing messages of ${b.key} failed: ${String(err)}`);
    } finally {
      b.pumping = false;
    }
  }

  /** One delivery of one batch, ending with an outcome for each message. */
  private async deliver(b: Binding, v: VersionRecord, msgs: LeasedMessage[]): Promise<void> {
    const q = this.o.queue;
    const name = b.cfg.queue;
    const def = await this.o.named.find(b.tenant, name);
    const retentionMs = def?.retentionMs ?? QUEUE_DEFAULTS.retentionMs;
    const maxRetries = b.cfg.maxRetries ?? def?.maxRetries ?? QUEUE_DEFAULTS.maxRetries;
    const dlq = b.cfg.deadLetterQueue ?? def?.dlq ?? undefined;
    const now = this.clock();
    const batch: LeasedMessage[] = [];
    const later: Promise<unknown>[] = [];
    let bytes = 0;
    for (const m of msgs) {
      if (now - m.enqueuedAt >= retentionMs) {
        later.push(q.deadLetter(m.id, m.token, "Not delivered within the queue's retention.", "expired"));
        continue;
      }
      bytes += Math.ceil(m.body.length / 3) * 4 + 512;
      // What does not fit this batch goes back at once, costing no attempt.
      if (batch.length > 0 && bytes > MAX_BATCH_PAYLOAD)
        later.push(q.nack(m.id, m.token, 0, "", { uncount: true }));
      else batch.push(m);
    }
    await Promise.all(later);
    if (batch.length === 0) return;
    const wire: BatchWire = {
      source: "queue",
      trigger: name,
      perMessage: true,
      attempt: Math.max(...batch.map((m) => m.attempts)),
      messages: batch.map((m) => {
        const meta = metaOf(m);
        const attributes: Record<string, string> = { sender: String(meta.sender ?? "") };
        if (meta.origin) {
          attributes.originQueue = String(meta.origin.queue);
          attributes.originId = String(meta.origin.id);
          attributes.error = String(meta.origin.error).slice(0, 500);
        }
        return {
          id: m.id,
          timestamp: m.enqueuedAt,
          subject: name,
          data: m.body.toString("base64"),
          attributes,
          attempts: m.attempts,
          contentType: meta.ct,
        };
      }),
    };
    // Big enough for a per-message answer naming every message of a 100-message batch.
    const responder = new CollectingResponder(64 * 1024);
    await this.o.invoker.invoke(
      {
        tenant: b.tenant,
        name: b.fn,
        version: v.version,
        method: "POST",
        path: "/",
        host: "localhost",
        headers: [["content-type", "application/json"]],
        body: Buffer.from(JSON.stringify(wire)),
        sourceIp: "",
        trigger: "queue",
        event: {
          id: batch[0]!.id,
          attempt: batch[0]!.attempts,
          enqueuedAt: Math.min(...batch.map((m) => m.enqueuedAt)),
          kind: "queue",
        },
      },
      v,
      responder,
    );
    const leaseLeft = Math.min(...batch.map((m) => m.leaseUntil)) - this.clock();
    const out = await outcomeWithin(responder.done, Math.max(1000, leaseLeft));
    if (out.error && NOT_RUN.has(out.error.code)) {
      // Refused before the function ran (throttled, shutting down): no attempt is used up.
      const why = `${out.error.code}: ${out.error.message}`;
      await Promise.all(
        batch.map((m) =>
          q.nack(m.id, m.token, 500 + Math.round(Math.random() * 1000), why, { uncount: true }),
        ),
      );
      return;
    }
    const d = decideBatch(
      out,
      batch.map((m) => m.id),
    );
    await Promise.all(
      batch.map(async (m) => {
        if (!d.retry.has(m.id)) {
          if (!(await q.ack(m.id, m.token)))
            this.o.log(
              `nimbus: message ${m.id} of ${b.key} was handled after its lease ended; it may run again`,
            );
          return;
        }
        const r = decideRetry({
          attempts: m.attempts,
          retries: maxRetries,
          enqueuedAt: m.enqueuedAt,
          maxEventAgeMs: retentionMs,
          now: this.clock(),
          random: Math.random(),
          baseMs: b.cfg.retryDelayMs ?? this.o.retryBaseMs,
        });
        if (r.action === "retry") {
          await q.nack(m.id, m.token, d.retry.get(m.id) ?? r.delayMs, d.why);
          return;
        }
        await this.dead(
          b,
          m,
          dlq,
          r.reason === "failed"
            ? `Out of retries (${maxRetries}); last: ${d.why}`
            : "Retention ended while retrying.",
          r.reason,
        );
      }),
    );
  }

  /**
   * A message out of retries: forwarded to the DLQ queue first (durably), then marked dead
   * in its own queue — so a crash between the two forwards it again (a duplicate in the DLQ),
   * never loses it.
   */
  private async dead(
    b: Binding,
    m: LeasedMessage,
    dlq: string | undefined,
    why: string,
    reason: "failed" | "expired",
  ): Promise<void> {
    let note = "";
    if (dlq && reason === "failed") {
      const meta = metaOf(m);
      try {
        const [id] = await this.o.named.send(
          b.tenant,
          dlq,
          [{ body: m.body, contentType: meta.ct }],
          meta.sender,
          { queue: b.cfg.queue, id: m.id, error: why.slice(0, 1000) },
        );
        note = ` Forwarded to queue '${dlq}' as ${id}.`;
      } catch (err) {
        note = ` Not forwarded to queue '${dlq}': ${err instanceof Error ? err.message : String(err)}`;
        this.o.log(`nimbus: dead message ${m.id} of ${b.key} not forwarded to '${dlq}': ${String(err)}`);
      }
    }
    await this.o.queue.deadLetter(m.id, m.token, `${why}${note}`, reason);
  }

  /** Stops leasing; waits (up to `deadlineMs`) for batches being delivered. */
  async close(deadlineMs = 10_000): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((r) => setTimeout(r, deadlineMs).unref()),
    ]);
  }
}
