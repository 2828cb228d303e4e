/**
 * The MQTT trigger (mqtt.js 5, MQTT 5 protocol): subscribes to a topic filter, batches the
 * messages, stores each batch as one durable async event of the function, and acknowledges
 * the QoS 1 messages (PUBACK) only once that event reached its terminal outcome: succeeded,
 * or dead-lettered/expired (then it is in the function's DLQ). A connection lost or a server
 * stopped before the PUBACK leaves the messages with the broker, which redelivers them in the
 * same persistent session (clean: false, a stable client id): at least once, and a message
 * whose stored event also completes runs twice (a duplicate).
 *
 * Everything the broker sends is untrusted: packets over the size limit end the connection
 * before they are buffered, topics over 1024 characters and payloads over `maxMessageBytes`
 * are dropped (counted), the broker may have at most `receiveMaximum` unacknowledged QoS 1
 * messages with us, and QoS 0 messages past the buffer are dropped (counted). A broker that
 * sends QoS 1 messages past Receive Maximum (Mosquitto 2.0 sends a whole quota more after
 * each PUBACK) is paused instead: the packet waits for room, and mqtt.js reads nothing more
 * from the socket until then, so the buffer keeps its bound and no message is lost.
 * A broker down at start or lost later is retried with exponential backoff (0.5 s to 30 s).
 */
import { createHash } from "node:crypto";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { type IClientOptions, type IPublishPacket, MqttClient } from "mqtt";
import { type Batcher, triggerBatcher } from "./batcher.ts";
import type { MqttTrigger } from "./config.ts";
import { triggerLabel } from "./config.ts";
import { guardStream } from "./mqtt-guard.ts";
import {
  type BatchSink,
  type Incoming,
  initialStatus,
  type TriggerAdapter,
  type TriggerStatus,
} from "./types.ts";

/** Longest topic accepted from the broker. */
export const MAX_TOPIC_CHARS = 1024;

/** The topic level naming the device: `deviceLevel`, else the filter's first `+` level. */
export function deviceOf(filter: string, topic: string, level?: number): string | undefined {
  const at = level ?? filter.split("/").indexOf("+");
  if (at < 0) return undefined;
  return topic.split("/")[at];
}

/** Backoff before reconnect attempt `n` (1-based), ms: 0.5 s doubling to 30 s, with jitter (pure). */
export function reconnectDelay(n: number, random: number): number {
  const base = Math.min(30_000, 500 * 2 ** Math.min(16, n - 1));
  return Math.round(base * (0.5 + random / 2));
}

// mqtt.js sends a PUBACK only when its custom-ack callback is called, and handles the next
// packet only after that: a sentinel error releases the packet at once without an ack, and
// the PUBACK is sent later through the client's packet writer.
const DEFERRED = new Error("nimbus: acknowledgement deferred until the event's outcome");

/** An MQTT trigger of one function. */
export class MqttAdapter implements TriggerAdapter {
  private readonly t: MqttTrigger;
  private readonly st: TriggerStatus;
  private readonly batcher: Batcher;
  private readonly log: (msg: string) => void;
  private readonly clientId: string;
  private client: MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Bumped on every connection: a PUBACK for an earlier connection is not sent. */
  private generation = 0;

  constructor(o: {
    fn: string;
    tenant: string;
    index: number;
    trigger: MqttTrigger;
    sink: BatchSink;
    log: (msg: string) => void;
  }) {
    this.t = o.trigger;
    this.log = o.log;
    const label = triggerLabel(o.trigger);
    this.clientId = `nimbus-${o.fn}-${createHash("sha256").update(`${o.tenant}/${o.fn}#${o.index} ${label}`).digest("hex").slice(0, 12)}`;
    this.st = initialStatus(o.fn, o.index, "mqtt", label);
    this.batcher = triggerBatcher(o.trigger, this.receiveMaximum(), o.sink, this.st, (why) =>
      this.error(why),
    );
  }

  /** QoS 1 messages the broker may leave unacknowledged with us (MQTT 5 Receive Maximum). */
  private receiveMaximum(): number {
    return Math.min(65_535, this.t.batchSize * (this.t.concurrency + 1));
  }

  private error(msg: string): void {
    this.st.lastError = msg.slice(0, 500);
    this.st.lastErrorAt = new Date().toISOString();
  }

  status(): TriggerStatus {
    return { ...this.st };
  }

  start(): void {
    const u = new URL(this.t.url);
    const tls = u.protocol === "mqtts:";
    const port = Number(u.port) || (tls ? 8883 : 1883);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    const maxPacket = this.t.maxMessageBytes + MAX_TOPIC_CHARS + 1024;
    const opts: IClientOptions = {
      protocolVersion: 5,
      clientId: this.clientId,
      clean: false,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: 30,
      username: this.t.username,
      password: this.t.password,
      properties: {
        sessionExpiryInterval: 3600,
        receiveMaximum: this.receiveMaximum(),
        maximumPacketSize: maxPacket,
      },
      customHandleAcks: (topic, message, packet, done) => {
        const held = this.onMessage(topic, message, packet);
        if (held) void held.then(() => done(DEFERRED));
        else done(DEFERRED);
      },
    };
    const build = () => {
      const sock = tls ? tlsConnect({ host, port, servername: host }) : netConnect({ host, port });
      return guardStream(sock, maxPacket, (m) => this.error(m));
    };
    const client = new MqttClient(build, opts);
    this.client = client;
    client.on("connect", () => {
      this.generation++;
      // Connected means subscribed: messages published from then on reach the function.
      client.subscribe(this.t.topic, { qos: this.t.qos }, (err, granted) => {
        if (err) this.error(`subscribing to ${this.t.topic} failed: ${err.message}`);
        else if (granted?.some((g) => g.qos >= 128))
          this.error(`the broker refused the subscription to ${this.t.topic}`);
        else {
          this.st.state = "connected";
          this.st.connectedAt = new Date().toISOString();
          this.st.retries = 0;
        }
      });
    });
    client.on("message", (topic, message, packet) => {
      // QoS 1 messages arrive through customHandleAcks; this is QoS 0 only.
      if (packet.qos === 0) void this.onMessage(topic, message, packet);
    });
    client.on("error", (err) => {
      if (err === DEFERRED) return;
      this.error(err.message);
    });
    // A broker that shuts down cleanly sends DISCONNECT (MQTT 5, with a reason) or just closes:
    // no 'error' then, but the status must still say why the trigger is retrying.
    client.on("disconnect", (packet) => {
      this.error(`the broker disconnected (reason code ${packet.reasonCode ?? 0})`);
    });
    client.on("close", () => {
      if (this.closed) return;
      const at = this.st.lastErrorAt;
      if (!at || (this.st.connectedAt !== null && at < this.st.connectedAt)) {
        this.error(`the connection to ${u.host} closed`);
      }
      this.generation++;
      this.st.state = "retrying";
      this.st.retries++;
      clearTimeout(this.timer);
      this.timer = setTimeout(
        () => {
          if (!this.closed) client.reconnect();
        },
        reconnectDelay(this.st.retries, Math.random()),
      );
    });
  }

  /** Takes a message; a promise when a QoS 1 one waits for room (the caller holds the socket). */
  private onMessage(topic: string, message: Buffer, packet: IPublishPacket): Promise<void> | undefined {
    this.st.received++;
    if (topic.length > MAX_TOPIC_CHARS || message.length > this.t.maxMessageBytes) {
      // Dropped, but acknowledged: a QoS 1 message left unacknowledged would come back forever.
      this.st.dropped++;
      this.error(
        `dropped a message on '${topic.slice(0, 100)}' of ${message.length} bytes (over the limits)`,
      );
      this.puback(packet, this.generation);
      return undefined;
    }
    const gen = this.generation;
    const attributes: Record<string, string> = { qos: String(packet.qos) };
    const device = deviceOf(this.t.topic, topic, this.t.deviceLevel);
    if (device !== undefined) attributes.deviceId = device;
    if (packet.retain) attributes.retain = "true";
    const m: Incoming = {
      subject: topic,
      data: message,
      attributes,
      at: Date.now(),
      ackOnOutcome: packet.qos === 1,
      settle: (ok) => {
        if (ok) this.puback(packet, gen);
      },
    };
    if (this.batcher.push(m)) return undefined;
    if (packet.qos === 1) return this.hold(m, gen);
    // QoS 0 over the buffer: at most once, so it is dropped (counted).
    this.st.dropped++;
    this.error("dropped a message: the trigger's buffer is full");
    return undefined;
  }

  /**
   * A QoS 1 message past Receive Maximum: waits for a held message to settle. A connection
   * lost meanwhile leaves it with the broker, which redelivers it in the session.
   */
  private async hold(m: Incoming, gen: number): Promise<void> {
    for (;;) {
      await this.batcher.whenRoom();
      if (this.closed || gen !== this.generation) return;
      if (this.batcher.push(m)) return;
    }
  }

  private puback(packet: IPublishPacket, gen: number): void {
    const c = this.client;
    if (packet.qos !== 1 || packet.messageId === undefined || !c || gen !== this.generation || !c.connected)
      return;
    (c as unknown as { _sendPacket(p: object, cb?: () => void): void })._sendPacket(
      { cmd: "puback", messageId: packet.messageId, reasonCode: 0 },
      () => {},
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.st.state = "stopped";
    await this.batcher.close();
    const c = this.client;
    if (c) await new Promise<void>((r) => c.end(true, {}, () => r()));
    this.log(`nimbus: trigger ${this.st.target} of ${this.st.function} stopped`);
  }
}
