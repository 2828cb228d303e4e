/**
 * The NATS trigger (@nats-io v3): a core subject with a queue group (at most once, as core
 * NATS is: a message that cannot be buffered is dropped and counted), or a JetStream durable
 * consumer with explicit ack: each message is acked once the async event holding its batch
 * reached its terminal outcome (succeeded, or dead-lettered/expired: then it is in the
 * function's DLQ), marked in progress meanwhile, and nak'ed when it never will be (the
 * server redelivers it).
 *
 * Untrusted input: payloads over `maxMessageBytes` and subjects over 1024 characters are
 * dropped (JetStream: terminated, so they are not redelivered); the consumer's
 * `max_ack_pending` (when Nimbus creates it) and the batcher's buffer bound what is held.
 * A server down at start is retried with exponential backoff (0.5 s to 30 s); a connection
 * lost later is re-established by the client (every 2 s), shown as `retrying` meanwhile.
 */
import {
  AckPolicy,
  type ConsumerMessages,
  type JsMsg,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { type Batcher, triggerBatcher } from "./batcher.ts";
import type { NatsTrigger } from "./config.ts";
import { triggerLabel } from "./config.ts";
import { MAX_TOPIC_CHARS, reconnectDelay } from "./mqtt.ts";
import {
  type BatchSink,
  type Incoming,
  initialStatus,
  type TriggerAdapter,
  type TriggerStatus,
} from "./types.ts";

/** A NATS trigger of one function. */
export class NatsAdapter implements TriggerAdapter {
  private readonly t: NatsTrigger;
  private readonly fn: string;
  private readonly st: TriggerStatus;
  private readonly batcher: Batcher;
  private readonly log: (msg: string) => void;
  private nc: NatsConnection | undefined;
  private sub: Subscription | undefined;
  private messages: ConsumerMessages | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** JetStream messages stored and waiting for their event's outcome (kept from redelivery). */
  private readonly inProgress = new Set<JsMsg>();
  private working: NodeJS.Timeout | undefined;

  constructor(o: {
    fn: string;
    tenant: string;
    index: number;
    trigger: NatsTrigger;
    sink: BatchSink;
    log: (msg: string) => void;
  }) {
    this.t = o.trigger;
    this.fn = o.fn;
    this.log = o.log;
    this.st = initialStatus(o.fn, o.index, "nats", triggerLabel(o.trigger));
    this.batcher = triggerBatcher(o.trigger, this.pending(), o.sink, this.st, (why) => this.error(why));
  }

  /** Messages held unacknowledged at most. */
  private pending(): number {
    return this.t.batchSize * (this.t.concurrency + 1);
  }

  private error(msg: string): void {
    this.st.lastError = msg.slice(0, 500);
    this.st.lastErrorAt = new Date().toISOString();
  }

  status(): TriggerStatus {
    return { ...this.st };
  }

  start(): void {
    void this.connectLoop();
  }

  private async connectLoop(): Promise<void> {
    const u = new URL(this.t.url);
    while (!this.closed) {
      try {
        const nc = await connect({
          servers: `${u.hostname}:${u.port || 4222}`,
          name: `nimbus-${this.fn}`,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 2000,
          timeout: 10_000,
        });
        if (this.closed) {
          await nc.close();
          return;
        }
        this.nc = nc;
        this.watch(nc);
        await this.subscribe(nc);
        // Connected means subscribed: the server has the interest once the flush returns.
        await nc.flush();
        this.st.state = "connected";
        this.st.connectedAt = new Date().toISOString();
        this.st.retries = 0;
        return;
      } catch (err) {
        this.error(err instanceof Error ? err.message : String(err));
        this.st.state = "retrying";
        this.st.retries++;
        const nc = this.nc;
        this.nc = undefined;
        await nc?.close().catch(() => {});
        await new Promise<void>((r) => {
          this.timer = setTimeout(r, reconnectDelay(this.st.retries, Math.random()));
        });
      }
    }
  }

  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (this.closed) return;
        if (s.type === "disconnect" || s.type === "reconnecting") {
          this.st.state = "retrying";
          if (s.type === "disconnect") {
            this.st.retries++;
            this.error(`disconnected from ${s.server}`);
          }
        } else if (s.type === "reconnect") {
          this.st.state = "connected";
          this.st.connectedAt = new Date().toISOString();
          this.st.retries = 0;
        } else if (s.type === "error") {
          this.error(String(s.error));
        }
      }
    })().catch((err: unknown) => this.error(String(err)));
  }

  private tooBig(subject: string, data: Uint8Array): boolean {
    if (subject.length <= MAX_TOPIC_CHARS && data.length <= this.t.maxMessageBytes) return false;
    this.st.dropped++;
    this.error(`dropped a message on '${subject.slice(0, 100)}' of ${data.length} bytes (over the limits)`);
    return true;
  }

  private async subscribe(nc: NatsConnection): Promise<void> {
    if (!this.t.stream) {
      this.sub = nc.subscribe(this.t.subject!, {
        queue: this.t.queue ?? `nimbus-${this.fn}`,
        callback: (err, msg) => {
          if (err) return this.error(err.message);
          this.st.received++;
          if (this.tooBig(msg.subject, msg.data)) return;
          const m: Incoming = {
            subject: msg.subject,
            data: Buffer.from(msg.data),
            attributes: { queue: this.t.queue ?? `nimbus-${this.fn}` },
            at: Date.now(),
            ackOnOutcome: false,
            settle: () => {},
          };
          if (!this.batcher.push(m)) {
            this.st.dropped++;
            this.error("dropped a message: the trigger's buffer is full");
          }
        },
      });
      return;
    }
    const stream = this.t.stream;
    const durable = this.t.consumer ?? `nimbus-${this.fn}`;
    const jsm = await jetstreamManager(nc);
    let ackWaitNs: number;
    try {
      ackWaitNs = (await jsm.consumers.info(stream, durable)).config.ack_wait ?? 30e9;
    } catch {
      ackWaitNs =
        (
          await jsm.consumers.add(stream, {
            durable_name: durable,
            ack_policy: AckPolicy.Explicit,
            max_ack_pending: this.pending(),
            ...(this.t.subject ? { filter_subject: this.t.subject } : {}),
          })
        ).config.ack_wait ?? 30e9;
    }
    // A message is acked only at its event's outcome (retries may take minutes): until then
    // it is marked in progress three times per ack wait, so the server does not redeliver it.
    clearInterval(this.working);
    this.working = setInterval(
      () => {
        for (const jm of this.inProgress) jm.working();
      },
      Math.max(1000, Math.floor((ackWaitNs || 30e9) / 1e6 / 3)),
    );
    this.working.unref();
    const consumer = await jetstream(nc).consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: this.pending() });
    this.messages = messages;
    void (async () => {
      for await (const jm of messages) {
        this.st.received++;
        if (this.tooBig(jm.subject, jm.data)) {
          // No reason text: servers before 2.10.4 do not understand "+TERM <reason>".
          jm.term();
          continue;
        }
        const m: Incoming = {
          subject: jm.subject,
          data: Buffer.from(jm.data),
          attributes: {
            stream,
            seq: String(jm.seq),
            deliveryCount: String(jm.info.deliveryCount),
          },
          at: Date.now(),
          ackOnOutcome: true,
          settle: (ok) => {
            this.inProgress.delete(jm);
            if (ok) jm.ack();
            else jm.nak();
          },
        };
        this.inProgress.add(jm);
        if (!this.batcher.push(m)) {
          this.inProgress.delete(jm);
          jm.nak(1000);
        }
      }
    })().catch((err: unknown) => this.error(`consuming ${stream}/${durable} ended: ${String(err)}`));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.working);
    this.st.state = "stopped";
    this.sub?.unsubscribe();
    await this.messages?.close().catch(() => {});
    await this.batcher.close();
    // Give the acks/naks of the last batches to the server before closing.
    await this.nc?.drain().catch(() => {});
    this.log(`nimbus: trigger ${this.st.target} of ${this.st.function} stopped`);
  }
}
