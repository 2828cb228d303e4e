/**
 * Producer bindings inside an instance (`env.JOBS.send(body)` / `sendBatch([...])`): the
 * messages go to the platform as one QUEUE_SEND frame, which answers QUEUE_SENT once they
 * are stored durably. Shared by the process shim and the isolate prelude; imports nothing
 * from the platform. The platform checks everything again (`src/invoker/frame-guard.ts`):
 * these checks only give the function an early, clear error.
 */

/** Limits of sends (as Cloudflare Queues). */
export const QUEUE_LIMITS = {
  /** One message's body, bytes. */
  messageBytes: 128 * 1024,
  /** Messages in one `sendBatch`. */
  batchMessages: 100,
  /** All bodies of one `sendBatch`, bytes. */
  batchBytes: 256 * 1024,
  /** Longest `delaySeconds` (12 hours). */
  delaySeconds: 43_200,
  /** Sends of one instance waiting for the platform's answer at once. */
  pendingSends: 16,
} as const;

/** How a body travels: JSON (parsed back for the consumer), text, or raw bytes. */
export type QueueContentType = "json" | "text" | "bytes";

/** The meta of a QUEUE_SEND frame; the payload is the bodies, one after another. */
export interface QueueSendMeta {
  /** Request number, echoed in QUEUE_SENT. */
  req: number;
  /** The binding name (`JOBS`), not the queue's: the platform maps it. */
  binding: string;
  messages: { bytes: number; contentType: QueueContentType; delaySeconds?: number }[];
}

/** The meta of a QUEUE_SENT frame. */
export interface QueueSentMeta {
  req: number;
  ok: boolean;
  /** Ids of the stored messages, in order. */
  ids?: string[];
  error?: { code: string; message: string };
}

/** What `send`/`sendBatch` take per message. */
export interface SendOptions {
  contentType?: string;
  delaySeconds?: number;
}

function encodeBody(
  body: unknown,
  contentType: string | undefined,
): { bytes: Uint8Array; ct: QueueContentType } {
  const enc = new TextEncoder();
  const ct = contentType === "v8" ? "json" : contentType;
  if (ct !== undefined && ct !== "json" && ct !== "text" && ct !== "bytes")
    throw new TypeError(
      `contentType must be "json", "text", "bytes" or "v8", got ${JSON.stringify(contentType)}.`,
    );
  if (body instanceof ArrayBuffer) return { bytes: new Uint8Array(body), ct: "bytes" };
  if (ArrayBuffer.isView(body))
    return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength), ct: "bytes" };
  if (typeof body === "string" && (ct === undefined || ct === "text"))
    return { bytes: enc.encode(body), ct: "text" };
  if (ct === "bytes" || ct === "text")
    throw new TypeError(`A "${ct}" message body must be a string or bytes.`);
  const json = JSON.stringify(body);
  if (json === undefined)
    throw new TypeError("The message body cannot be sent as JSON (undefined or a function).");
  return { bytes: enc.encode(json), ct: "json" };
}

/** Encodes one send (1 to 100 messages) into a QUEUE_SEND frame's meta and payload. */
export function encodeQueueSend(
  req: number,
  binding: string,
  items: ({ body: unknown } & SendOptions)[],
  batchOpts: SendOptions = {},
): { meta: QueueSendMeta; payload: Uint8Array } {
  if (!Array.isArray(items) || items.length === 0)
    throw new TypeError("sendBatch needs at least one message.");
  if (items.length > QUEUE_LIMITS.batchMessages)
    throw new RangeError(
      `sendBatch takes at most ${QUEUE_LIMITS.batchMessages} messages, got ${items.length}.`,
    );
  const parts: Uint8Array[] = [];
  const messages: QueueSendMeta["messages"] = [];
  let total = 0;
  for (const it of items) {
    if (it === null || typeof it !== "object")
      throw new TypeError("Each message must be an object { body }.");
    const { bytes, ct } = encodeBody(it.body, it.contentType ?? batchOpts.contentType);
    if (bytes.byteLength > QUEUE_LIMITS.messageBytes)
      throw new RangeError(
        `A message body is ${bytes.byteLength} bytes; queues take at most ${QUEUE_LIMITS.messageBytes}.`,
      );
    total += bytes.byteLength;
    if (total > QUEUE_LIMITS.batchBytes)
      throw new RangeError(`A batch may hold at most ${QUEUE_LIMITS.batchBytes} bytes of bodies.`);
    const delay = it.delaySeconds ?? batchOpts.delaySeconds;
    const m: QueueSendMeta["messages"][number] = { bytes: bytes.byteLength, contentType: ct };
    if (delay !== undefined) {
      if (
        typeof delay !== "number" ||
        !Number.isFinite(delay) ||
        delay < 0 ||
        delay > QUEUE_LIMITS.delaySeconds
      )
        throw new RangeError(`delaySeconds must be from 0 to ${QUEUE_LIMITS.delaySeconds}.`);
      m.delaySeconds = Math.round(delay);
    }
    messages.push(m);
    parts.push(bytes);
  }
  const payload = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    payload.set(p, off);
    off += p.byteLength;
  }
  return { meta: { req, binding, messages }, payload };
}

/**
 * Makes the `env` objects of producer bindings. `transmit` sends the frame; the promise it
 * registers settles when QUEUE_SENT comes back (see {@link ProducerClient.settle}).
 */
export class ProducerClient {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly transmit: (meta: QueueSendMeta, payload: Uint8Array) => void;

  constructor(transmit: (meta: QueueSendMeta, payload: Uint8Array) => void) {
    this.transmit = transmit;
  }

  private send(binding: string, items: ({ body: unknown } & SendOptions)[], o?: SendOptions): Promise<void> {
    try {
      if (this.waiting.size >= QUEUE_LIMITS.pendingSends)
        throw new RangeError(
          `${QUEUE_LIMITS.pendingSends} sends are already waiting for the platform; await them before sending more.`,
        );
      const req = ++this.seq;
      const { meta, payload } = encodeQueueSend(req, binding, items, o);
      return new Promise<void>((resolve, reject) => {
        this.waiting.set(req, { resolve, reject });
        this.transmit(meta, payload);
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The `env.<binding>` object: Workers' Queue producer API. */
  binding(name: string): {
    send(body: unknown, o?: SendOptions): Promise<void>;
    sendBatch(list: ({ body: unknown } & SendOptions)[], o?: SendOptions): Promise<void>;
  } {
    return {
      send: (body, o) => this.send(name, [{ body, ...o }]),
      sendBatch: (list, o) => this.send(name, Array.isArray(list) ? list : [], o),
    };
  }

  /** Settles a send with the platform's QUEUE_SENT answer. */
  settle(m: QueueSentMeta): void {
    const w = this.waiting.get(m?.req);
    if (!w) return;
    this.waiting.delete(m.req);
    if (m.ok) w.resolve();
    else {
      const e = new Error(m.error?.message ?? "The queue refused the message.");
      (e as Error & { code?: string }).code = m.error?.code;
      w.reject(e);
    }
  }
}
