/**
 * The `triggers` field of a function's config: MQTT topics and NATS subjects (core with a
 * queue group, or a JetStream consumer) whose messages reach the function in batches.
 * Validated here (pure); `validateEventConfig` calls it.
 */
import { NimbusError } from "../errors.ts";

/** Settings every trigger has. */
export interface TriggerCommon {
  /** Messages per delivery, at most. @default 10 */
  batchSize: number;
  /** How long a partial batch waits for more messages, ms. @default 1000 */
  maxWaitMs: number;
  /** Batches of this trigger stored (MQTT, core NATS) or in flight (JetStream) at once. @default 4 */
  concurrency: number;
  /** Largest message accepted, bytes; larger ones are dropped (and counted). @default 65536 */
  maxMessageBytes: number;
}

/** An MQTT subscription. */
export interface MqttTrigger extends TriggerCommon {
  type: "mqtt";
  /** `mqtt://host:port` (or `mqtts://`). */
  url: string;
  /** A topic filter; `+` matches one level, `#` the rest. */
  topic: string;
  /** 0 (at most once) or 1 (at least once: acknowledged after the batch is stored). @default 1 */
  qos: 0 | 1;
  /** Optional credentials. */
  username?: string;
  password?: string;
  /** The topic level that names the device (`sensors/+/temp` → 1). @default the first `+` level */
  deviceLevel?: number;
}

/** A NATS subscription. */
export interface NatsTrigger extends TriggerCommon {
  type: "nats";
  /** `nats://host:port`. */
  url: string;
  /** Core NATS: subject (wildcards `*`, `>`) with a queue group. */
  subject?: string;
  /** Queue group of a core subscription. @default "nimbus-<function>" */
  queue?: string;
  /** JetStream: the stream and durable consumer (created when missing, explicit ack). */
  stream?: string;
  consumer?: string;
}

/** One trigger. */
export type TriggerConfig = MqttTrigger | NatsTrigger;

/**
 * Message bytes in one batch, at most: a batch travels as one stored event (base64 in JSON)
 * within the 256 KB event limit, so batches are also cut by size.
 */
export const MAX_BATCH_BYTES = 180 * 1024;

function bad(field: string, message: string): NimbusError {
  return new NimbusError("NIMBUS_BAD_CONFIG", `config.${field}: ${message}`, { details: { field } });
}

function int(field: string, v: unknown, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw bad(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}.`);
  return v;
}

function waitMs(field: string, v: unknown): number {
  if (v === undefined) return 1000;
  let ms: number | undefined;
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) ms = Math.round(v * 1000);
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$/.exec(v);
    if (m) ms = Math.round(Number(m[1]) * (m[2] === "s" ? 1000 : 1));
  }
  if (ms === undefined || ms > 60_000)
    throw bad(field, `must be seconds (a number) or "500ms"/"2s", at most 60 s; got ${JSON.stringify(v)}.`);
  return ms;
}

function url(field: string, v: unknown, schemes: string[]): string {
  if (typeof v === "string" && v.length <= 500) {
    try {
      const u = new URL(v);
      if (schemes.includes(u.protocol.slice(0, -1)) && u.hostname) return v;
    } catch {}
  }
  throw bad(
    field,
    `must be a ${schemes.map((s) => `${s}://host:port`).join(" or ")} URL, got ${JSON.stringify(v)}.`,
  );
}

/** True when `filter` is a valid MQTT topic filter (`+` a whole level, `#` the whole last level). */
export function isMqttFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > 256 || filter.includes("\u0000")) return false;
  const levels = filter.split("/");
  return levels.every(
    (l, i) => (l === "#" && i === levels.length - 1) || l === "+" || (!l.includes("+") && !l.includes("#")),
  );
}

/** True when `subject` is a valid NATS subject (tokens `*`, `>` last). */
export function isNatsSubject(subject: string): boolean {
  if (subject.length === 0 || subject.length > 256 || /\s/.test(subject)) return false;
  const t = subject.split(".");
  return t.every(
    (x, i) =>
      x.length > 0 && (x === ">" ? i === t.length - 1 : !x.includes(">") && (x === "*" || !x.includes("*"))),
  );
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const KNOWN: Record<string, string[]> = {
  mqtt: ["type", "url", "topic", "qos", "username", "password", "deviceLevel"],
  nats: ["type", "url", "subject", "queue", "stream", "consumer"],
};
const COMMON = ["batchSize", "maxWait", "concurrency", "maxMessageBytes"];

/** Validates `config.triggers` (a list of up to 10). */
export function validateTriggers(raw: unknown): TriggerConfig[] {
  if (!Array.isArray(raw) || raw.length > 10)
    throw bad(
      "triggers",
      'must be a list of up to 10 triggers, e.g. [{ "type": "mqtt", "url": "mqtt://127.0.0.1:1883", "topic": "sensors/+/temp" }].',
    );
  return raw.map((t, i): TriggerConfig => {
    const f = (k: string) => `triggers[${i}].${k}`;
    if (typeof t !== "object" || t === null || Array.isArray(t))
      throw bad(`triggers[${i}]`, 'must be an object with a "type" ("mqtt" or "nats").');
    const o = t as Record<string, unknown>;
    if (o.type !== "mqtt" && o.type !== "nats")
      throw bad(f("type"), `must be "mqtt" or "nats", got ${JSON.stringify(o.type)}.`);
    for (const k of Object.keys(o))
      if (!KNOWN[o.type]!.includes(k) && !COMMON.includes(k))
        throw bad(f(k), `unknown field. Known fields: ${[...KNOWN[o.type]!, ...COMMON].join(", ")}.`);
    const common: TriggerCommon = {
      batchSize: int(f("batchSize"), o.batchSize, 1, 100, 10),
      maxWaitMs: waitMs(f("maxWait"), o.maxWait),
      concurrency: int(f("concurrency"), o.concurrency, 1, 64, 4),
      maxMessageBytes: int(f("maxMessageBytes"), o.maxMessageBytes, 1, MAX_BATCH_BYTES, 64 * 1024),
    };
    for (const k of ["username", "password"] as const)
      if (o[k] !== undefined && (typeof o[k] !== "string" || (o[k] as string).length > 256))
        throw bad(f(k), "must be a string of at most 256 characters.");
    if (o.type === "mqtt") {
      if (typeof o.topic !== "string" || !isMqttFilter(o.topic))
        throw bad(
          f("topic"),
          `must be an MQTT topic filter ("+" for one level, "#" last for the rest), got ${JSON.stringify(o.topic)}.`,
        );
      if (o.qos !== undefined && o.qos !== 0 && o.qos !== 1)
        throw bad(f("qos"), `must be 0 or 1, got ${JSON.stringify(o.qos)}.`);
      const m: MqttTrigger = {
        type: "mqtt",
        url: url(f("url"), o.url, ["mqtt", "mqtts"]),
        topic: o.topic,
        qos: (o.qos as 0 | 1 | undefined) ?? 1,
        ...common,
      };
      if (o.username !== undefined) m.username = o.username as string;
      if (o.password !== undefined) m.password = o.password as string;
      if (o.deviceLevel !== undefined) m.deviceLevel = int(f("deviceLevel"), o.deviceLevel, 0, 32, 0);
      return m;
    }
    const n: NatsTrigger = { type: "nats", url: url(f("url"), o.url, ["nats"]), ...common };
    if (o.stream !== undefined || o.consumer !== undefined) {
      if (typeof o.stream !== "string" || !NAME.test(o.stream))
        throw bad(f("stream"), "must be a JetStream stream name (letters, digits, _ and -, up to 64).");
      if (o.consumer !== undefined && (typeof o.consumer !== "string" || !NAME.test(o.consumer)))
        throw bad(f("consumer"), "must be a durable consumer name (letters, digits, _ and -, up to 64).");
      n.stream = o.stream;
      if (o.consumer !== undefined) n.consumer = o.consumer as string;
    }
    if (o.subject !== undefined) {
      if (typeof o.subject !== "string" || !isNatsSubject(o.subject))
        throw bad(
          f("subject"),
          `must be a NATS subject ("*" for one token, ">" last for the rest), got ${JSON.stringify(o.subject)}.`,
        );
      n.subject = o.subject;
    }
    if (n.subject === undefined && n.stream === undefined)
      throw bad(f("subject"), 'is required (or "stream" for a JetStream consumer).');
    if (o.queue !== undefined) {
      if (typeof o.queue !== "string" || !NAME.test(o.queue))
        throw bad(f("queue"), "must be a queue group name (letters, digits, _ and -, up to 64).");
      n.queue = o.queue;
    }
    return n;
  });
}

/** A short name for a trigger (status, logs): `mqtt://127.0.0.1:1883 sensors/+/temp`. */
export function triggerLabel(t: TriggerConfig): string {
  let u = t.url;
  try {
    const p = new URL(t.url);
    u = `${p.protocol}//${p.host}`;
  } catch {}
  if (t.type === "mqtt") return `${u} ${t.topic}`;
  return t.stream ? `${u} stream ${t.stream}${t.consumer ? `/${t.consumer}` : ""}` : `${u} ${t.subject}`;
}
