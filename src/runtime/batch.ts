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
  /** Named queues: deliveries of this message so far, this one included. */
  attempts?: number;
  /** Named queues: how the body was sent (`json` is parsed back, `bytes` stays bytes). */
  contentType?: "json" | "text" | "bytes";
}

/** The batch payload. */
export interface BatchWire {
  /** `mqtt` or `nats`. */
  source: string;
  /** Which trigger (`mqtt://127.0.0.1:1883 sensors/+/temp`). */
  trigger: string;
  /** Delivery attempt of this batch (1 on the first). */
  attempt?: number;
  /**
   * Named queues (`source: "queue"`): each message has its own outcome. The runtime answers
   * with {@link outcomeBody} (Workers `queue()`, fetch) or the Lambda handler's own result
   * (`batchItemFailures`), instead of failing the whole batch.
   */
  perMessage?: boolean;
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
  /** Messages marked `ack()` (explicitly). */
  acked: string[];
  /** `retry({ delaySeconds })` per message id. */
  delays: Map<string, number>;
}

/** A named-queue message body as the producer sent it (JSON parsed back, text, or bytes). */
function typedBody(m: BatchMessageWire): unknown {
  const u = b64(m.data);
  if (m.contentType === "bytes") return u;
  const text = bodyOf(u);
  if (m.contentType === "json" && typeof text === "string") {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** A retry delay a function asked for, in whole seconds from 0 to 12 hours (as Workers). */
function delayOf(o: unknown): number | undefined {
  const d = (o as { delaySeconds?: unknown } | undefined)?.delaySeconds;
  if (typeof d !== "number" || !Number.isFinite(d)) return undefined;
  return Math.min(43_200, Math.max(0, Math.round(d)));
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
  const delays = new Map<string, number>();
  const messages = w.messages.map((m) => ({
    id: m.id,
    timestamp: new Date(m.timestamp),
    body: w.perMessage ? typedBody(m) : bodyOf(b64(m.data)),
    attempts: m.attempts ?? w.attempt ?? 1,
    topic: m.subject,
    attributes: m.attributes,
    ack: () => void marks.set(m.id, "ack"),
    retry: (o?: unknown) => {
      marks.set(m.id, "retry");
      const d = delayOf(o);
      if (d !== undefined) delays.set(m.id, d);
    },
  }));
  const batch = {
    queue: w.trigger,
    messages,
    ackAll: () => {
      for (const m of messages) marks.set(m.id, "ack");
    },
    retryAll: (o?: unknown) => {
      for (const m of messages) m.retry(o);
    },
  };
  return {
    batch,
    outcome: () => ({
      retried: [...marks].filter(([, s]) => s === "retry").map(([id]) => id),
      acked: [...marks].filter(([, s]) => s === "ack").map(([id]) => id),
      delays,
    }),
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

/**
 * The Lambda SQS event for a named-queue batch: `Records` as SQS gives them
 * (`eventSource: "aws:sqs"`, `attributes.ApproximateReceiveCount`, …), so a handler written
 * for SQS (with `batchItemFailures` partial-batch responses) runs unchanged.
 */
export function toSqsEvent(w: BatchWire): { Records: Record<string, unknown>[] } {
  return {
    Records: w.messages.map((m) => {
      const text = m.contentType === "bytes" ? undefined : bodyOf(b64(m.data));
      return {
        messageId: m.id,
        receiptHandle: m.id,
        body: typeof text === "string" ? text : m.data,
        attributes: {
          ApproximateReceiveCount: String(m.attempts ?? 1),
          SentTimestamp: String(m.timestamp),
          SenderId: m.attributes.sender ?? "nimbus",
          ApproximateFirstReceiveTimestamp: String(m.timestamp),
        },
        messageAttributes: {
          contentType: { stringValue: m.contentType ?? "text", dataType: "String" },
        },
        eventSource: "aws:sqs",
        eventSourceARN: `arn:nimbus:sqs:local:default:${w.trigger}`,
        awsRegion: "local",
      };
    }),
  };
}

/** The key of the per-message outcome a runtime answers a named-queue batch with. */
export const OUTCOME_KEY = "nimbusQueueOutcome";

/** The per-message outcome body: messages to retry (with the delay asked, if any). */
export function outcomeBody(retry: { id: string; delaySeconds?: number }[], error?: string): string {
  return JSON.stringify({ [OUTCOME_KEY]: { retry, error } });
}

/**
 * Runs a named-queue batch (`w.perMessage`) through a Workers module: `queue(batch)` when it
 * has one (returning acks every message not asked to retry; throwing retries every message
 * not acked), else one CloudEvent POST per message to `fetch` (a 5xx or a throw retries that
 * message). Answers the status and {@link outcomeBody} to send back.
 */
export async function runQueueBatch<R>(
  w: BatchWire,
  url: string,
  queueFn: ((batch: Record<string, unknown>) => unknown) | undefined,
  fetchFn: (req: R) => unknown,
  make: (url: string, init: { method: string; headers: [string, string][]; body: Uint8Array }) => R,
  onError: (message: string) => void,
): Promise<{ status: number; body: string }> {
  if (queueFn) {
    const { batch, outcome } = toMessageBatch(w);
    let threw: string | undefined;
    try {
      await queueFn(batch);
    } catch (err) {
      threw = err instanceof Error ? (err.stack ?? err.message) : String(err);
      onError(`queue() threw: ${threw}`);
    }
    const o = outcome();
    const acked = new Set(o.acked);
    const ids = threw === undefined ? o.retried : w.messages.map((m) => m.id).filter((id) => !acked.has(id));
    const retry = ids.map((id) => ({ id, delaySeconds: o.delays.get(id) }));
    return { status: threw === undefined ? 200 : 500, body: outcomeBody(retry, threw?.slice(0, 1000)) };
  }
  const retry: { id: string }[] = [];
  const reqs = toCloudEventRequests(w, url, make);
  for (let i = 0; i < reqs.length; i++) {
    const id = w.messages[i]!.id;
    try {
      const res = (await fetchFn(reqs[i]!)) as { status?: unknown } | undefined;
      if (typeof res?.status !== "number") throw new TypeError("The fetch handler must return a Response.");
      if (res.status >= 500) retry.push({ id });
    } catch (err) {
      onError(`fetch failed for message ${id}: ${err instanceof Error ? err.message : String(err)}`);
      retry.push({ id });
    }
  }
  return { status: 200, body: outcomeBody(retry) };
}
