/**
 * Trigger batches inside an instance (kind `queue`): the payload is a JSON batch of broker
 * messages (MQTT, NATS), delivered as Workers' `queue(batch, env, ctx)` when the module has
 * one, as the Lambda `Records` shape to a Lambda handler, and otherwise as one POST per
 * message to `fetch`, each a binary-mode CloudEvent. Imports nothing from the platform.
 */

/** One message of a batch, as the platform sends it. */
export interface BatchMessageWire {
  id: string;
  /** ms since the epoch the broker message arrived. */
  timestamp: number;
  /** Topic (MQTT) or subject (NATS). */
  subject: string;
  /** Body bytes, base64. */
  data: string;
  /** Extra attributes (deviceId, qos, stream, …): short strings. */
  attributes: Record<string, string>;
}

/** The batch payload. */
export interface BatchWire {
  /** `mqtt` or `nats`. */
  source: string;
  /** Which trigger (`mqtt://127.0.0.1:1883 sensors/+/temp`). */
  trigger: string;
  /** Delivery attempt of this batch (1 on the first). */
  attempt?: number;
  messages: BatchMessageWire[];
}

const b64 = (s: string): Uint8Array => {
  const bin = atob(s);
  const u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return u;
};

/** Text when the bytes are valid UTF-8, the bytes otherwise. */
function bodyOf(u: Uint8Array): string | Uint8Array {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(u);
  } catch {
    return u;
  }
}

/** Parses the batch payload. */
export function parseBatch(body: Uint8Array): BatchWire {
  const w = JSON.parse(new TextDecoder().decode(body)) as BatchWire;
  if (!w || !Array.isArray(w.messages)) throw new TypeError("Not a trigger batch.");
  return w;
}

/** The Lambda `Records` event (SQS-like records, plus the topic/subject and attributes). */
export function toRecordsEvent(w: BatchWire): { Records: Record<string, unknown>[] } {
  return {
    Records: w.messages.map((m) => {
      const u = b64(m.data);
      const text = bodyOf(u);
      return {
        messageId: m.id,
        eventSource: `nimbus:${w.source}`,
        eventSourceARN: `arn:nimbus:${w.source}:local:${w.trigger}`,
        topic: m.subject,
        body: typeof text === "string" ? text : m.data,
        bodyEncoding: typeof text === "string" ? "utf-8" : "base64",
        attributes: {
          ApproximateReceiveCount: String(w.attempt ?? 1),
          SentTimestamp: String(m.timestamp),
          ...m.attributes,
        },
      };
    }),
  };
}

/** What a Workers `queue()` handler left for each message. */
export interface BatchOutcome {
  retried: string[];
}

/**
 * Workers' MessageBatch. `ack()`/`retry()` per message; after `queue()` returns, any message
 * asked to retry (and not acked later) fails the whole batch, which is then retried as one.
 */
export function toMessageBatch(w: BatchWire): {
  batch: Record<string, unknown>;
  outcome: () => BatchOutcome;
} {
  const marks = new Map<string, "ack" | "retry">();
  const messages = w.messages.map((m) => ({
    id: m.id,
    timestamp: new Date(m.timestamp),
    body: bodyOf(b64(m.data)),
    attempts: w.attempt ?? 1,
    topic: m.subject,
    attributes: m.attributes,
    ack: () => void marks.set(m.id, "ack"),
    retry: () => void marks.set(m.id, "retry"),
  }));
  const batch = {
    queue: w.trigger,
    messages,
    ackAll: () => {
      for (const m of messages) marks.set(m.id, "ack");
    },
    retryAll: () => {
      for (const m of messages) marks.set(m.id, "retry");
    },
  };
  return {
    batch,
    outcome: () => ({ retried: [...marks].filter(([, s]) => s === "retry").map(([id]) => id) }),
  };
}

/** One binary-mode CloudEvent request per message (`ce-*` headers, the raw bytes as body). */
export function toCloudEventRequests<R>(
  w: BatchWire,
  url: string,
  make: (url: string, init: { method: string; headers: [string, string][]; body: Uint8Array }) => R,
): R[] {
  return w.messages.map((m) => {
    const headers: [string, string][] = [
      ["ce-specversion", "1.0"],
      ["ce-id", m.id],
      ["ce-source", `nimbus/${w.source}/${w.trigger}`],
      ["ce-type", `io.nimbus.${w.source}.message`],
      ["ce-subject", m.subject],
      ["ce-time", new Date(m.timestamp).toISOString()],
      ["content-type", "application/octet-stream"],
    ];
    // Extension attribute names are lower-case letters and digits only.
    for (const [k, v] of Object.entries(m.attributes)) {
      const name = k.toLowerCase().replace(/[^a-z0-9]/g, "");
      if (name) headers.push([`ce-${name}`, v]);
    }
    return make(url, { method: "POST", headers, body: b64(m.data) });
  });
}

/** The error a failed batch reports (the whole batch is retried). */
export function batchFailure(retried: string[], total: number): Error {
  return new Error(`${retried.length} of ${total} messages asked for retry; the batch is retried.`);
}
