/**
 * The dispatcher: leases async events from the queue within each function's concurrency
 * limits, delivers them through the invoker (so they are metered, logged and billed like
 * HTTP calls), then acks, retries with backoff, or dead-letters them, and reports to the
 * function's destinations.
 *
 * Async work never takes more than `asyncShare` of a function's capacity (maxInstances ×
 * concurrency, or its reserved concurrency) nor of the machine's, so synchronous callers
 * keep the rest. A lease lasts the time an attempt may take (queue wait + timeout + grace):
 * if the server dies mid-attempt, the event becomes deliverable again when it ends.
 */
import type { Invoker } from "../invoker/invoker.ts";
import type { LeasedMessage, Queue } from "../queue/types.ts";
import type { VersionRecord } from "../store/types.ts";
import { type EventMeta, parseFunctionQueue } from "./async.ts";
import { EVENT_DEFAULTS } from "./config.ts";
import type { Destinations } from "./destinations.ts";
import type { TerminalOutcome } from "./outcomes.ts";
import { type AttemptOutcome, CollectingResponder, outcomeWithin } from "./responder.ts";
import { decideRetry, isExpired } from "./retry.ts";

/** Dispatcher settings. */
export interface DispatcherOptions {
  queue: Queue;
  invoker: Invoker;
  destinations?: Destinations;
  log: (msg: string) => void;
  /** Invocations running at once on this machine (the scheduler's limit). */
  machineConcurrency: number;
  /** Share of a function's (and the machine's) concurrency async work may use. @default 0.5 */
  asyncShare?: number;
  /** How long a request may wait for an instance (the scheduler's queueWaitMs). @default 10000 */
  queueWaitMs?: number;
  /** Added to every lease beyond queue wait + timeout, ms. @default 5000 */
  leaseGraceMs?: number;
  /** How often queues are polled for delayed retries and expired leases, ms. @default 250 */
  pollMs?: number;
  /** Delay before the first retry (before jitter), ms. @default 1000 */
  retryBaseMs?: number;
  /** The clock. @default Date.now */
  clock?: () => number;
  /** Told each terminal outcome this dispatcher records (the triggers' broker acks wait for it). */
  onTerminal?: (id: string, outcome: TerminalOutcome) => void;
}

/** Refusals that happen before the function runs: they do not use up a retry. */
export const NOT_RUN: ReadonlySet<string> = new Set([
  "NIMBUS_THROTTLED",
  "NIMBUS_RESERVED_CONCURRENCY_EXCEEDED",
  "NIMBUS_MACHINE_CONCURRENCY_EXCEEDED",
  "NIMBUS_MACHINE_MEMORY_EXHAUSTED",
  "NIMBUS_UNAVAILABLE",
]);

interface QueueState {
  inflight: number;
  pumping: boolean;
  again: boolean;
}

/** The dispatcher. */
export class Dispatcher {
  private readonly o: DispatcherOptions;
  private readonly share: number;
  private readonly clock: () => number;
  private readonly states = new Map<string, QueueState>();
  private total = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly running = new Set<Promise<void>>();

  constructor(o: DispatcherOptions) {
    this.o = o;
    this.share = Math.min(1, Math.max(0.01, o.asyncShare ?? 0.5));
    this.clock = o.clock ?? Date.now;
  }

  /** Starts polling (events left from a previous run are picked up at once). */
  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.pollMs ?? 250);
    this.timer.unref();
    void this.tick();
  }

  /** Wakes the dispatcher for a queue that just got work. */
  kick(queue: string): void {
    void this.pump(queue);
  }

  /** Async attempts running now. */
  get inflight(): number {
    return this.total;
  }

  private async tick(): Promise<void> {
    if (this.closed) return;
    let names: string[];
    try {
      names = await this.o.queue.queuesWithWork();
    } catch (err) {
      this.o.log(`nimbus: reading the event queue failed: ${String(err)}`);
      return;
    }
    for (const n of names) if (parseFunctionQueue(n)) void this.pump(n);
  }

  private state(name: string): QueueState {
    let s = this.states.get(name);
    if (!s) {
      s = { inflight: 0, pumping: false, again: false };
      this.states.set(name, s);
    }
    return s;
  }

  /** How many async attempts of this version may run at once. */
  limitFor(v: VersionRecord): number {
    const capacity = v.config.reservedConcurrency ?? v.config.maxInstances * v.config.concurrency;
    return Math.max(1, Math.floor(capacity * this.share));
  }

  private leaseMs(v: VersionRecord): number {
    return (this.o.queueWaitMs ?? 10_000) + v.config.timeoutMs + (this.o.leaseGraceMs ?? 5000);
  }

  private async pump(name: string): Promise<void> {
    const s = this.state(name);
    if (this.closed) return;
    if (s.pumping) {
      s.again = true;
      return;
    }
    const target = parseFunctionQueue(name);
    if (!target) return;
    s.pumping = true;
    try {
      do {
        s.again = false;
        let v: VersionRecord | undefined;
        try {
          v = this.o.invoker.resolve(target.tenant, target.fn);
        } catch {
          v = undefined;
        }
        const limit = v ? this.limitFor(v) : 16;
        const machine = Math.max(1, Math.floor(this.o.machineConcurrency * this.share));
        const room = Math.min(limit - s.inflight, machine - this.total);
        if (room <= 0) break;
        const leaseMs = v ? this.leaseMs(v) : 30_000;
        const msgs = await this.o.queue.lease(name, room, leaseMs);
        for (const m of msgs) {
          s.inflight++;
          this.total++;
          const p = this.attempt(m)
            .catch((err: unknown) => this.o.log(`nimbus: async delivery of ${m.id} failed: ${String(err)}`))
            .finally(() => {
              s.inflight--;
              this.total--;
              this.running.delete(p);
              if (!this.closed) void this.pump(name);
            });
          this.running.add(p);
        }
        // A full lease may have left more; a kick during the lease may have brought more.
        if (msgs.length === room) s.again = true;
      } while (s.again && !this.closed);
    } catch (err) {
      this.o.log(`nimbus: leasing events of ${name} failed: ${String(err)}`);
    } finally {
      s.pumping = false;
    }
  }

  /** One delivery attempt of one event, ending in ack, nack or dead-letter. */
  private async attempt(m: LeasedMessage): Promise<void> {
    const q = this.o.queue;
    const meta = JSON.parse(m.meta) as EventMeta;
    let v: VersionRecord;
    try {
      v = this.o.invoker.resolve(meta.tenant, meta.fn, meta.version);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (await this.deadLetter(m, msg, "failed")) this.o.destinations?.report(meta, m, "failed", msg);
      return;
    }
    const maxAge = v.config.maxEventAgeMs ?? EVENT_DEFAULTS.maxEventAgeMs;
    if (isExpired(m.enqueuedAt, maxAge, this.clock())) {
      const msg = `Not delivered: older than maxEventAge (${maxAge} ms).`;
      if (await this.deadLetter(m, msg, "expired"))
        this.o.destinations?.report(meta, m, "expired", msg, undefined, v);
      return;
    }
    const responder = new CollectingResponder();
    await this.o.invoker.invoke(
      {
        tenant: meta.tenant,
        name: meta.fn,
        version: meta.version,
        method: meta.method,
        path: meta.path,
        host: meta.host,
        headers: meta.headers,
        body: m.body,
        sourceIp: meta.sourceIp,
        trigger: meta.trigger,
        event: {
          id: m.id,
          attempt: m.attempts,
          enqueuedAt: m.enqueuedAt,
          kind: meta.kind === "http" ? undefined : meta.kind,
        },
      },
      v,
      responder,
    );
    // An attempt never outlives its lease: past it the event is someone else's (redelivered).
    const out = await outcomeWithin(responder.done, Math.max(1000, m.leaseUntil - this.clock()));
    const result = JSON.stringify({
      status: out.status,
      body: out.body.toString("utf8"),
      bodyBytes: out.bodyBytes,
    });
    if (out.ok) {
      if (await q.ack(m.id, m.token, result)) {
        this.o.onTerminal?.(m.id, "succeeded");
        this.o.destinations?.report(meta, m, "succeeded", undefined, out, v);
      } else this.o.log(`nimbus: event ${m.id} succeeded after its lease ended; it may run again`);
      return;
    }
    const why = out.error ? `${out.error.code}: ${out.error.message}` : `status ${out.status}`;
    if (out.error && NOT_RUN.has(out.error.code)) {
      // The platform refused before the function ran (throttled, shutting down): not the
      // function's failure, so it costs no attempt; it waits and tries again until maxEventAge.
      const d = decideRetry({
        attempts: 1,
        retries: 1,
        enqueuedAt: m.enqueuedAt,
        maxEventAgeMs: maxAge,
        now: this.clock(),
        random: Math.random(),
        baseMs: this.o.retryBaseMs,
      });
      if (d.action === "retry") await q.nack(m.id, m.token, d.delayMs, why, { uncount: true });
      else if (await this.deadLetter(m, why, "expired"))
        this.o.destinations?.report(meta, m, "expired", why, out, v);
      return;
    }
    const d = decideRetry({
      attempts: m.attempts,
      retries: v.config.retries ?? EVENT_DEFAULTS.retries,
      enqueuedAt: m.enqueuedAt,
      maxEventAgeMs: maxAge,
      now: this.clock(),
      random: Math.random(),
      baseMs: this.o.retryBaseMs,
    });
    if (d.action === "retry") {
      await q.nack(m.id, m.token, d.delayMs, why);
    } else if (await this.deadLetter(m, why, d.reason)) {
      this.o.destinations?.report(meta, m, d.reason, why, out, v);
    }
  }

  /** Moves the event to the dead-letter queue; false when its lease was lost meanwhile. */
  private async deadLetter(m: LeasedMessage, why: string, reason: "failed" | "expired"): Promise<boolean> {
    if (!(await this.o.queue.deadLetter(m.id, m.token, why, reason))) return false;
    this.o.onTerminal?.(m.id, reason === "expired" ? "expired" : "dead-lettered");
    return true;
  }

  /** Stops leasing; waits (up to `deadlineMs`) for running attempts. */
  async close(deadlineMs = 10_000): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((r) => setTimeout(r, deadlineMs).unref()),
    ]);
  }
}
