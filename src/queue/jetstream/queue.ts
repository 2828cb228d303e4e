/**
 * The Queue seam on NATS JetStream, for cluster mode.
 *
 * - Bodies live in a work-queue stream (one subject per queue, file storage, replicas 3 when
 *   the NATS cluster has three or more servers). A message leaves it when acked or
 *   terminated. Each publish carries `Nats-Msg-Id` = the message (invocation) id, so a
 *   publish retried after a lost PubAck is stored once.
 * - Each queue has a durable pull consumer with explicit ack: a lease is a delivery, its
 *   length the consumer's ack wait, `extend` sends in-progress (`+WPI`), `nack` sends
 *   `-NAK` with the delay, and a lease nobody ends is redelivered by the server after the
 *   ack wait — also when the node that held it died.
 * - What the seam reports per message (state, attempts, result, error…) and the lease token
 *   live in a KV bucket, changed only by compare-and-set, so a stale holder's ack is refused
 *   even when the server would accept it.
 * - Dead letters are copied to a dead-letter stream, then terminated in the work stream;
 *   redrive publishes them back.
 *
 * Acknowledged means: the PubAck came back, i.e. the message is stored on a majority of the
 * stream's replicas (see README, "Cluster").
 */
import { randomUUID } from "node:crypto";
import {
  AckPolicy,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type PubAck,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { connect, createInbox, headers, type Msg, type NatsConnection } from "@nats-io/transport-node";
import {
  type EnqueueInput,
  type EnqueueResult,
  type LeasedMessage,
  type MessageInfo,
  type MessageState,
  type Queue,
  QueueFullError,
  type QueueOptions,
  type QueueStats,
} from "../types.ts";
import { MAX_NAME_CHARS, Names, parseAckSubject, token, untoken } from "./names.ts";
import { encodeRecord, freshRecord, parseRecord, type StateRecord, toInfo } from "./state.ts";

/** Options of the JetStream queue. */
export interface JetStreamQueueOptions extends QueueOptions {
  /** NATS servers, e.g. `["nats://a:4222", "nats://b:4222"]`. */
  servers: string | string[];
  /** Prefix of the streams, bucket and subjects (clusters or tests sharing one NATS). @default "NIMBUS" */
  prefix?: string;
  /**
   * Replicas of the streams and the state bucket.
   * @default 3 when the server reports three or more cluster members, else 1
   */
  replicas?: number;
  /** Wait for a JetStream API reply (PubAck, KV write), ms. @default 5000 */
  timeoutMs?: number;
}

/** Header naming the message id (the stream's own `Nats-Msg-Id` is dropped on redelivery paths). */
const ID_HEADER = "Nimbus-Id";
/** Attempts of a compare-and-set loop before giving up (each retry re-reads the record). */
const CAS_TRIES = 8;
/** How long a de-duplication claim whose message is not stored yet is waited for, ms. */
const CLAIM_WAIT_MS = 2000;

function isConflict(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164);
}

/** The JetStream queue. Open it with {@link JetStreamQueue.open}. */
export class JetStreamQueue implements Queue {
  private readonly nc: NatsConnection;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly kv: KV;
  private readonly names: Names;
  private readonly clock: () => number;
  private readonly maxDepth: number;
  private readonly dedupWindowMs: number;
  private readonly retentionMs: number;
  private readonly timeoutMs: number;
  /** Replicas the streams were created with. */
  readonly replicas: number;
  /** Consumers known to exist, with the ack wait (ms) they have. */
  private readonly consumers = new Map<string, number>();
  /** Enqueues pass one at a time up to their publish, so publishes keep call order. */
  private gate: Promise<unknown> = Promise.resolve();
  /** Published but not yet acknowledged, per queue (counted in the depth). */
  private readonly inflight = new Map<string, number>();
  private readonly pruneTimer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    nc: NatsConnection,
    jsm: JetStreamManager,
    kv: KV,
    names: Names,
    replicas: number,
    opts: JetStreamQueueOptions,
  ) {
    this.nc = nc;
    this.jsm = jsm;
    this.kv = kv;
    this.names = names;
    this.replicas = replicas;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.js = jetstream(nc, { timeout: this.timeoutMs });
    this.clock = opts.clock ?? Date.now;
    this.maxDepth = opts.maxDepth ?? 100_000;
    this.dedupWindowMs = opts.dedupWindowMs ?? 86_400_000;
    this.retentionMs = opts.retentionMs ?? 86_400_000;
    this.pruneTimer = setInterval(() => {
      this.prune().catch(() => {});
    }, 60_000);
    this.pruneTimer.unref();
  }

  /**
   * Connects and creates (or opens) the streams and the state bucket.
   * @example const q = await JetStreamQueue.open({ servers: ["nats://127.0.0.1:4222"] });
   */
  static async open(opts: JetStreamQueueOptions): Promise<JetStreamQueue> {
    const names = new Names(opts.prefix ?? "NIMBUS");
    const nc = await connect({
      servers: opts.servers,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      name: "nimbus-queue",
    });
    try {
      const jsm = await jetstreamManager(nc, { timeout: opts.timeoutMs ?? 5000 });
      const members = new Set(nc.info?.connect_urls ?? []).size;
      const replicas = opts.replicas ?? (members >= 3 ? 3 : 1);
      const maxDepth = opts.maxDepth ?? 100_000;
      const common = {
        storage: StorageType.File,
        num_replicas: replicas,
        discard: DiscardPolicy.New,
        // Nats-Msg-Id: a publish retried after a lost PubAck (same message id) is stored once.
        duplicate_window: 120_000_000_000,
      };
      await ensureStream(jsm, {
        ...common,
        name: names.workStream,
        subjects: [names.workAll],
        retention: RetentionPolicy.Workqueue,
      });
      await ensureStream(jsm, {
        ...common,
        name: names.deadStream,
        subjects: [names.deadAll],
        retention: RetentionPolicy.Limits,
        max_msgs: maxDepth * 10,
      });
      const kv = await whilePlacing(() =>
        new Kvm(nc).create(names.stateBucket, {
          history: 1,
          replicas,
          storage: StorageType.File,
          timeout: opts.timeoutMs ?? 5000,
        }),
      );
      return new JetStreamQueue(nc, jsm, kv, names, replicas, opts);
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  // ---- enqueue -------------------------------------------------------------------------

  async enqueue(
    queue: string,
    items: EnqueueInput[],
    opts: { maxDepth?: number } = {},
  ): Promise<EnqueueResult[]> {
    this.open_(queue);
    for (const i of items) if (i.id !== undefined) checkName("message id", i.id);
    // Up to the publish, one enqueue at a time: the depth check sees earlier batches, and
    // publishes leave in call order (the stream's order is the lease order).
    const issued = this.gate.then(() => this.issue(queue, items, opts.maxDepth ?? this.maxDepth));
    this.gate = issued.catch(() => {});
    const plan = await issued;
    // Every PubAck settles before anything is answered (none left unobserved on a failure).
    const acks = await Promise.allSettled(plan.map((p) => ("ack" in p ? p.ack : undefined)));
    this.inflight.set(queue, (this.inflight.get(queue) ?? 0) - plan.filter((p) => "ack" in p).length);
    const failed = acks.find((a) => a.status === "rejected");
    if (failed) {
      // Part of the batch may be stored (and will be delivered); the caller retries the
      // whole batch with the same ids, which Nats-Msg-Id keeps from being stored twice.
      throw new Error(`enqueue to '${queue}' was not acknowledged by JetStream: ${String(failed.reason)}`, {
        cause: failed.reason,
      });
    }
    const out: EnqueueResult[] = [];
    for (let i = 0; i < plan.length; i++) {
      const p = plan[i]!;
      if ("dup" in p) {
        out.push({ id: p.dup, duplicate: true });
        continue;
      }
      const ack = (acks[i] as PromiseFulfilledResult<PubAck>).value;
      if (ack.duplicate) {
        // The same id was published moments ago (a retried enqueue): one message.
        out.push({ id: p.id, duplicate: true });
        continue;
      }
      const rec = freshRecord(p.id, queue, p.now, p.delayMs, p.meta, p.bodyBytes, ack.seq);
      try {
        await this.kv.create(this.names.stateKey(queue, p.id), encodeRecord(rec));
      } catch (err) {
        // A lease got there first and wrote the record from the message: keep that.
        if (!isConflict(err)) throw err;
      }
      out.push({ id: p.id, duplicate: false });
    }
    return out;
  }

  /** Checks the depth, claims de-duplication keys and issues the publishes, in order. */
  private async issue(
    queue: string,
    items: EnqueueInput[],
    maxDepth: number,
  ): Promise<
    (
      | { dup: string }
      | { id: string; ack: Promise<PubAck>; now: number; delayMs: number; meta: string; bodyBytes: number }
    )[]
  > {
    const now = this.clock();
    const fresh = items.filter((i) => i.dedupKey === undefined).length;
    const keyed = new Set(items.filter((i) => i.dedupKey !== undefined).map((i) => i.dedupKey)).size;
    const depth = (await this.depth(queue)) + (this.inflight.get(queue) ?? 0);
    // Refuse the whole batch before storing any of it (keyed items may turn out duplicates:
    // the check counts them, erring on the side of the bound).
    if (depth + fresh + keyed > maxDepth) throw new QueueFullError(queue, maxDepth);
    const plan: Awaited<ReturnType<JetStreamQueue["issue"]>> = [];
    const inBatch = new Map<string, string>();
    for (const item of items) {
      const id = item.id ?? randomUUID();
      if (item.dedupKey !== undefined) {
        const prior = inBatch.get(item.dedupKey) ?? (await this.claim(queue, item.dedupKey, id, now));
        if (prior !== undefined) {
          plan.push({ dup: prior });
          continue;
        }
        inBatch.set(item.dedupKey, id);
      }
      const h = headers();
      h.set(ID_HEADER, id);
      h.set("Nimbus-Enqueued-At", String(now));
      h.set("Nimbus-Available-At", String(now + Math.max(0, item.delayMs ?? 0)));
      h.set("Nimbus-Meta", Buffer.from(item.meta ?? "{}").toString("base64"));
      plan.push({
        id,
        ack: this.js.publish(this.names.work(queue), item.body, {
          msgID: `${token(queue)}.${token(id)}`,
          headers: h,
          timeout: this.timeoutMs,
        }),
        now,
        delayMs: item.delayMs ?? 0,
        meta: item.meta ?? "{}",
        bodyBytes: item.body.byteLength,
      });
    }
    const published = plan.filter((p) => "ack" in p).length;
    this.inflight.set(queue, (this.inflight.get(queue) ?? 0) + published);
    return plan;
  }

  /**
   * Claims `key` for message `id`. Returns the id of the message that holds it within the
   * window (a duplicate), or undefined when this enqueue now holds it.
   */
  private async claim(queue: string, key: string, id: string, now: number): Promise<string | undefined> {
    const k = this.names.dedupKey(queue, key);
    const value = Buffer.from(JSON.stringify({ id, at: now }));
    for (let i = 0; i < CAS_TRIES; i++) {
      try {
        await this.kv.create(k, value);
        return undefined;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
      const e = await this.kv.get(k);
      if (e?.operation !== "PUT") continue;
      const held = JSON.parse(Buffer.from(e.value).toString("utf8")) as { id: string; at: number };
      if (held.at >= now - this.dedupWindowMs) {
        // The holder's message counts once it is stored; a holder that died before
        // publishing must not swallow this enqueue: wait for its record, then take over.
        if (await this.waitForRecord(queue, held.id, held.at)) return held.id;
      }
      try {
        await this.kv.update(k, value, e.revision);
        return undefined;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    throw new Error(`de-duplication key of queue '${queue}' kept changing; retry the enqueue.`);
  }

  private async waitForRecord(queue: string, id: string, claimedAt: number): Promise<boolean> {
    const until = Math.max(claimedAt, this.clock()) + CLAIM_WAIT_MS;
    for (;;) {
      if (await this.kv.get(this.names.stateKey(queue, id)).then((e) => e?.operation === "PUT")) return true;
      if (this.clock() >= until || Date.now() >= until) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Messages of the queue still in the work stream (ready, delayed or leased). */
  private async depth(queue: string): Promise<number> {
    const subject = this.names.work(queue);
    const info = await this.jsm.streams.info(this.names.workStream, { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  }

  // ---- lease ---------------------------------------------------------------------------

  async lease(queue: string, max: number, leaseMs: number): Promise<LeasedMessage[]> {
    this.open_(queue);
    if (max <= 0) return [];
    await this.ensureConsumer(queue, leaseMs);
    const msgs = await this.pull(queue, max);
    const out: LeasedMessage[] = [];
    for (const m of msgs) {
      const leased = await this.take(queue, m, leaseMs);
      if (leased) out.push(leased);
    }
    return out;
  }

  /** Turns one delivery into a lease, or settles it when the record says it is finished. */
  private async take(queue: string, m: Msg, leaseMs: number): Promise<LeasedMessage | undefined> {
    const d = parseAckSubject(m.reply ?? "");
    const id = m.headers?.get(ID_HEADER);
    if (!d || !id || id.length > MAX_NAME_CHARS) {
      // Not written by this queue: drop it rather than hand out bytes nobody can trace.
      if (m.reply) m.respond("+TERM");
      return undefined;
    }
    const key = this.names.stateKey(queue, id);
    for (let i = 0; i < CAS_TRIES; i++) {
      const now = this.clock();
      const e = await this.kv.get(key);
      const r = e?.operation === "PUT" ? parseRecord(e.value) : undefined;
      if (!e || !r) {
        // Stored but its record is not written yet (or its writer died, or it is garbage):
        // write it from the headers.
        const rec = freshRecord(
          id,
          queue,
          Number(m.headers?.get("Nimbus-Enqueued-At")) || now,
          (Number(m.headers?.get("Nimbus-Available-At")) || now) -
            (Number(m.headers?.get("Nimbus-Enqueued-At")) || now),
          Buffer.from(m.headers?.get("Nimbus-Meta") ?? "", "base64").toString("utf8") || "{}",
          m.data.byteLength,
          d.streamSeq,
        );
        try {
          if (e?.operation === "PUT") await this.kv.update(key, encodeRecord(rec), e.revision);
          else await this.kv.create(key, encodeRecord(rec));
        } catch (err) {
          if (!isConflict(err)) throw err;
        }
        continue;
      }
      if (r.state === "succeeded" || r.state === "dead" || (r.seq !== null && r.seq !== d.streamSeq)) {
        // Finished (its ack or term did not reach the server), or a stale copy.
        m.respond(r.state === "succeeded" ? "+ACK" : "+TERM");
        return undefined;
      }
      if (r.availableAt > now && r.state === "ready") {
        // Delayed (enqueued with a delay, or nacked whose -NAK delay was lost): not yet.
        m.respond(`-NAK ${JSON.stringify({ delay: (r.availableAt - now) * 1_000_000 })}`);
        return undefined;
      }
      // The server's redelivery of a leased message means its lease ended: a new lease.
      const next: StateRecord = {
        ...r,
        state: "leased",
        attempts: r.attempts + 1,
        token: `${token(queue)}.${randomUUID()}`,
        leaseUntil: now + leaseMs,
        reply: m.reply ?? null,
        seq: d.streamSeq,
        firstAttemptAt: r.firstAttemptAt ?? now,
        lastAttemptAt: now,
      };
      try {
        await this.kv.update(key, encodeRecord(next), e.revision);
      } catch (err) {
        if (!isConflict(err)) throw err;
        continue;
      }
      return {
        id,
        queue,
        body: Buffer.from(m.data),
        meta: next.meta,
        attempts: next.attempts,
        enqueuedAt: next.enqueuedAt,
        token: next.token!,
        leaseUntil: next.leaseUntil!,
      };
    }
    // Left with the server: redelivered after the ack wait.
    return undefined;
  }

  /** One pull request that does not wait: what the consumer can deliver now, up to `max`. */
  private async pull(queue: string, max: number): Promise<Msg[]> {
    const inbox = createInbox();
    const sub = this.nc.subscribe(inbox, { max: max + 1 });
    const timer = setTimeout(() => sub.unsubscribe(), this.timeoutMs);
    this.nc.publish(
      `$JS.API.CONSUMER.MSG.NEXT.${this.names.workStream}.${this.names.consumer(queue)}`,
      JSON.stringify({ batch: max, no_wait: true }),
      { reply: inbox },
    );
    const out: Msg[] = [];
    try {
      for await (const m of sub) {
        // A status (404 no messages, 408 request done, 409 limits) ends the request.
        if (!m.reply) break;
        out.push(m);
        if (out.length >= max) break;
      }
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
    return out;
  }

  /** Creates the queue's consumer, or moves its ack wait to this lease length. */
  private async ensureConsumer(queue: string, leaseMs: number): Promise<void> {
    const name = this.names.consumer(queue);
    const known = this.consumers.get(queue);
    if (known === leaseMs) return;
    const ackWait = Math.max(1, Math.round(leaseMs)) * 1_000_000;
    if (known === undefined) {
      try {
        const info = await this.jsm.consumers.info(this.names.workStream, name);
        if (info.config.ack_wait !== ackWait)
          await this.jsm.consumers.update(this.names.workStream, name, { ack_wait: ackWait });
        this.consumers.set(queue, leaseMs);
        return;
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.code !== 10014) throw err;
      }
      await this.jsm.consumers.add(this.names.workStream, {
        durable_name: name,
        filter_subject: this.names.work(queue),
        ack_policy: AckPolicy.Explicit,
        ack_wait: ackWait,
        // Attempts are counted (and capped) by Nimbus in the record, not by the server.
        max_deliver: -1,
        // Nacked-with-delay messages stay pending: the bound is the queue's depth bound.
        max_ack_pending: this.maxDepth,
      });
    } else {
      await this.jsm.consumers.update(this.names.workStream, name, { ack_wait: ackWait });
    }
    this.consumers.set(queue, leaseMs);
  }

  // ---- ending a lease ------------------------------------------------------------------

  /**
   * Applies `change` to the record leased under `tok`; false when the lease is gone
   * (another token, or no longer leased).
   */
  private async settle(
    id: string,
    tok: string,
    change: (r: StateRecord, now: number) => StateRecord,
  ): Promise<StateRecord | undefined> {
    const queue = queueOfToken(tok);
    if (queue === undefined) return undefined;
    const key = this.names.stateKey(queue, id);
    for (let i = 0; i < CAS_TRIES; i++) {
      const e = await this.kv.get(key);
      if (e?.operation !== "PUT") return undefined;
      const r = parseRecord(e.value);
      if (r?.state !== "leased" || r.token !== tok) return undefined;
      const next = change(r, this.clock());
      try {
        await this.kv.update(key, encodeRecord(next), e.revision);
        return r;
      } catch (err) {
        if (!isConflict(err)) throw err;
      }
    }
    return undefined;
  }

  /** Tells the server about a settled delivery; a lost word only means a redelivery that the record settles. */
  private async tellServer(reply: string | null, word: string): Promise<void> {
    if (!reply) return;
    await this.nc.request(reply, word, { timeout: this.timeoutMs }).catch(() => {});
  }

  async extend(id: string, tok: string, leaseMs: number): Promise<boolean> {
    const r = await this.settle(id, tok, (r, now) => ({ ...r, leaseUntil: now + leaseMs }));
    if (!r) return false;
    await this.tellServer(r.reply, "+WPI");
    return true;
  }

  async ack(id: string, tok: string, result?: string): Promise<boolean> {
    const r = await this.settle(id, tok, (r, now) => ({
      ...r,
      state: "succeeded",
      token: null,
      leaseUntil: null,
      finishedAt: now,
      result: result ?? null,
    }));
    if (!r) return false;
    await this.tellServer(r.reply, "+ACK");
    return true;
  }

  async nack(
    id: string,
    tok: string,
    delayMs: number,
    error: string,
    opts: { uncount?: boolean } = {},
  ): Promise<boolean> {
    const delay = Math.max(0, delayMs);
    const r = await this.settle(id, tok, (r, now) => ({
      ...r,
      state: "ready",
      token: null,
      leaseUntil: null,
      reply: null,
      availableAt: now + delay,
      error,
      attempts: Math.max(0, r.attempts - (opts.uncount ? 1 : 0)),
    }));
    if (!r) return false;
    await this.tellServer(
      r.reply,
      delay > 0 ? `-NAK ${JSON.stringify({ delay: delay * 1_000_000 })}` : "-NAK",
    );
    return true;
  }

  async deadLetter(id: string, tok: string, error: string, reason: "failed" | "expired"): Promise<boolean> {
    const current = await this.current(id, tok);
    if (!current || current.seq === null) return false;
    // The copy goes first: a dead record always has its body.
    const body = await this.jsm.streams.getMessage(this.names.workStream, { seq: current.seq });
    if (!body) return false;
    const h = headers();
    h.set(ID_HEADER, id);
    const copy = await this.js.publish(this.names.dead(current.queue), body.data, {
      msgID: `dead.${token(id)}.${current.seq}`,
      headers: h,
      timeout: this.timeoutMs,
    });
    const r = await this.settle(id, tok, (r, now) => ({
      ...r,
      state: "dead",
      token: null,
      leaseUntil: null,
      finishedAt: now,
      error,
      deadReason: reason,
      deadSeq: copy.seq,
    }));
    if (!r) {
      if (!copy.duplicate)
        await this.jsm.streams.deleteMessage(this.names.deadStream, copy.seq, false).catch(() => {});
      return false;
    }
    await this.tellServer(r.reply, "+TERM");
    return true;
  }

  /** The record leased under `tok`, read without changing it. */
  private async current(id: string, tok: string): Promise<StateRecord | undefined> {
    const queue = queueOfToken(tok);
    if (queue === undefined) return undefined;
    const e = await this.kv.get(this.names.stateKey(queue, id));
    if (e?.operation !== "PUT") return undefined;
    const r = parseRecord(e.value);
    return r?.state === "leased" && r.token === tok ? r : undefined;
  }

  // ---- reading -------------------------------------------------------------------------

  async get(id: string): Promise<MessageInfo | undefined> {
    const r = await this.findById(id);
    return r ? toInfo(r) : undefined;
  }

  private async findById(id: string): Promise<StateRecord | undefined> {
    if (id.length === 0 || id.length > MAX_NAME_CHARS) return undefined;
    for (const r of await this.records(this.names.stateOfId(id))) return r;
    return undefined;
  }

  /** Every live record under a key filter (one ordered scan of the bucket's last values). */
  private async records(filter: string): Promise<StateRecord[]> {
    const out: StateRecord[] = [];
    const it = await this.kv.history({ key: filter });
    for await (const e of it) {
      const r = e.operation === "PUT" ? parseRecord(e.value) : undefined;
      if (r) out.push(r);
    }
    return out;
  }

  async list(queue: string, opts: { state?: MessageState; limit?: number } = {}): Promise<MessageInfo[]> {
    this.open_(queue);
    const limit = Math.min(Math.max(1, opts.limit ?? 100), 10_000);
    return (await this.records(this.names.stateOfQueue(queue)))
      .filter((r) => !opts.state || r.state === opts.state)
      .sort((a, b) => b.order - a.order)
      .slice(0, limit)
      .map(toInfo);
  }

  async body(id: string): Promise<Buffer | undefined> {
    const r = await this.findById(id);
    if (!r) return undefined;
    const [stream, seq] =
      r.state === "dead" ? [this.names.deadStream, r.deadSeq] : [this.names.workStream, r.seq];
    if (seq === null) return undefined;
    const m = await this.jsm.streams.getMessage(stream, { seq }).catch(() => null);
    return m ? Buffer.from(m.data) : undefined;
  }

  async stats(queue: string): Promise<QueueStats> {
    this.open_(queue);
    const now = this.clock();
    const s: QueueStats = { ready: 0, delayed: 0, leased: 0, dead: 0, succeeded: 0 };
    for (const r of await this.records(this.names.stateOfQueue(queue))) {
      if (r.state === "ready") {
        if (r.availableAt > now) s.delayed++;
        else s.ready++;
      } else s[r.state]++;
    }
    return s;
  }

  async queuesWithWork(): Promise<string[]> {
    this.open_("-");
    const info = await this.jsm.streams.info(this.names.workStream, { subjects_filter: this.names.workAll });
    const out: string[] = [];
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) {
      const q = this.names.queueOfWork(subject);
      if (q !== undefined && n > 0) out.push(q);
    }
    return out.sort();
  }

  // ---- dead letters and maintenance ----------------------------------------------------

  async redrive(queue: string, ids?: string[]): Promise<number> {
    this.open_(queue);
    const want = ids ? new Set(ids) : undefined;
    let n = 0;
    for (const dead of await this.records(this.names.stateOfQueue(queue))) {
      if (dead.state !== "dead" || (want && !want.has(dead.id)) || dead.deadSeq === null) continue;
      const copy = await this.jsm.streams
        .getMessage(this.names.deadStream, { seq: dead.deadSeq })
        .catch(() => null);
      if (!copy) continue;
      const key = this.names.stateKey(queue, dead.id);
      const e = await this.kv.get(key);
      if (e?.operation !== "PUT") continue;
      const r = parseRecord(e.value);
      if (r?.state !== "dead") continue;
      const now = this.clock();
      const ready: StateRecord = {
        ...r,
        state: "ready",
        attempts: 0,
        enqueuedAt: now,
        availableAt: now,
        firstAttemptAt: null,
        lastAttemptAt: null,
        finishedAt: null,
        deadReason: null,
        // Unknown until the publish below: a lease that sees the new copy first takes it.
        seq: null,
        redrives: r.redrives + 1,
      };
      try {
        await this.kv.update(key, encodeRecord(ready), e.revision);
      } catch (err) {
        if (isConflict(err)) continue;
        throw err;
      }
      const h = headers();
      h.set(ID_HEADER, r.id);
      h.set("Nimbus-Enqueued-At", String(now));
      h.set("Nimbus-Available-At", String(now));
      h.set("Nimbus-Meta", Buffer.from(r.meta).toString("base64"));
      await this.js.publish(this.names.work(queue), copy.data, {
        msgID: `${token(queue)}.${token(r.id)}.r${ready.redrives}`,
        headers: h,
        timeout: this.timeoutMs,
      });
      await this.jsm.streams.deleteMessage(this.names.deadStream, dead.deadSeq, false).catch(() => {});
      n++;
    }
    return n;
  }

  async purge(queue: string, which: "dead" | "ready"): Promise<number> {
    this.open_(queue);
    let n = 0;
    for (const r of await this.records(this.names.stateOfQueue(queue))) {
      if (r.state !== which) continue;
      const [stream, seq] =
        which === "dead" ? [this.names.deadStream, r.deadSeq] : [this.names.workStream, r.seq];
      if (seq !== null) await this.jsm.streams.deleteMessage(stream, seq, false).catch(() => {});
      await this.kv.purge(this.names.stateKey(queue, r.id));
      n++;
    }
    return n;
  }

  /**
   * Forgets succeeded messages past the retention window and de-duplication claims past
   * theirs, then drops the delete markers left behind. Runs every minute.
   */
  async prune(): Promise<number> {
    if (this.closed) return 0;
    const now = this.clock();
    let n = 0;
    for (const r of await this.records("m.>")) {
      if (r.state === "succeeded" && (r.finishedAt ?? 0) < now - this.retentionMs) {
        await this.kv.purge(this.names.stateKey(r.queue, r.id));
        n++;
      }
    }
    const claims = await this.kv.history({ key: this.names.dedupAll });
    for await (const e of claims) {
      if (e.operation !== "PUT") continue;
      const held = JSON.parse(Buffer.from(e.value).toString("utf8")) as { at: number };
      if (held.at < now - this.dedupWindowMs) {
        await this.kv.delete(e.key, { previousSeq: e.revision }).catch(() => {});
        n++;
      }
    }
    await (this.kv as KV & { purgeDeletes(olderMillis?: number): Promise<unknown> }).purgeDeletes(0);
    return n;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pruneTimer);
    await this.gate.catch(() => {});
    await this.nc.drain();
  }

  /** Refuses calls after close and queue names the subjects cannot carry. */
  private open_(queue: string): void {
    if (this.closed) throw new Error("The queue is closed.");
    checkName("queue name", queue);
  }
}

/**
 * The queue a lease token names (`<queue token>.<uuid>`), or undefined for a token this
 * queue never issued (only a canonical encoding of a valid name counts).
 */
function queueOfToken(tok: string): string | undefined {
  if (typeof tok !== "string") return undefined;
  const dot = tok.indexOf(".");
  if (dot <= 0) return undefined;
  const t = tok.slice(0, dot);
  const queue = untoken(t);
  if (queue.length === 0 || queue.length > MAX_NAME_CHARS || token(queue) !== t) return undefined;
  return queue;
}

function checkName(what: string, s: string): void {
  if (typeof s !== "string" || s.length === 0 || s.length > MAX_NAME_CHARS) {
    throw new Error(`A ${what} must be 1-${MAX_NAME_CHARS} characters.`);
  }
}

/** Creates a stream, or updates it to this configuration when it exists. */
async function ensureStream(
  jsm: JetStreamManager,
  config: Parameters<JetStreamManager["streams"]["add"]>[0],
): Promise<void> {
  try {
    await jsm.streams.info(config.name!);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === 10059) {
      await whilePlacing(() => jsm.streams.add(config));
      return;
    }
    throw err;
  }
}

/**
 * Runs `create`, retrying for up to 15 s while JetStream has too few peers to place the
 * replicas: servers of a cluster that is starting join the JetStream layer one by one.
 */
async function whilePlacing<T>(create: () => Promise<T>): Promise<T> {
  const until = Date.now() + 15_000;
  for (;;) {
    try {
      return await create();
    } catch (err) {
      const placing = err instanceof Error && /no suitable peers|insufficient resources/i.test(err.message);
      if (!placing || Date.now() >= until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
