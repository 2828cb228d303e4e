/**
 * Named queues as a product: definitions (`nimbus queue create jobs`) kept in the store,
 * messages kept in the Queue seam as `q/<tenant>/<name>`, and sends from the API, the CLI
 * and functions' producer bindings. Every send is stored durably (fsync'd) before it is
 * acknowledged. Delivery to consumers is `./consumer.ts`'s job.
 */
import { NimbusError } from "../errors.ts";
import { uuidv7 } from "../invoker/invoker.ts";
import { type MessageInfo, type Queue, QueueFullError, type QueueStats } from "../queue/types.ts";
import { QUEUE_LIMITS, type QueueContentType, type QueueSendMeta } from "../runtime/queue-send.ts";
import type { QueueRecord, Store } from "../store/types.ts";
import { QUEUE_NAME } from "./config.ts";

/** Defaults of a queue's settings. */
export const QUEUE_DEFAULTS = {
  /** Retries after the first failed delivery (a consumer's `maxRetries` overrides it). */
  maxRetries: 3,
  /** 4 days, as SQS. */
  retentionMs: 4 * 86_400_000,
  /** Undelivered messages at most. */
  maxBacklog: 10_000,
} as const;

/** Longest retention (14 days, as SQS). */
export const MAX_RETENTION_MS = 14 * 86_400_000;
/** Largest backlog a queue may be given. */
export const MAX_BACKLOG = 1_000_000;

/** What a stored message carries besides its body (the Queue's `meta`). */
export interface MessageMeta {
  /** How the body was sent. */
  ct: QueueContentType;
  /** Who sent it: `api`, or `fn:<name>`. */
  sender: string;
  /** For a message forwarded to a dead-letter queue: where it died. */
  origin?: { queue: string; id: string; error: string };
}

/** One message to send. */
export interface SendItem {
  body: Uint8Array;
  contentType: QueueContentType;
  delaySeconds?: number;
}

/** A queue as the API shows it. */
export interface QueueView {
  name: string;
  maxRetries: number;
  dlq: string | null;
  retentionSeconds: number;
  maxBacklog: number;
  createdAt: string;
  stats: QueueStats;
}

/** A message as the API shows it. */
export interface MessageView {
  id: string;
  state: string;
  attempts: number;
  enqueuedAt: string;
  finishedAt: string | null;
  error: string | null;
  deadReason: string | null;
  bodyBytes: number;
  contentType: string;
  sender: string;
}

/** The Queue name of a named queue's messages. */
export function queueKey(tenant: string, name: string): string {
  return `q/${tenant}/${name}`;
}

/** Splits a named queue's Queue name; undefined for other queues. */
export function parseQueueKey(key: string): { tenant: string; name: string } | undefined {
  const m = /^q\/([^/]+)\/([a-z][a-z0-9-]{0,62})$/.exec(key);
  return m ? { tenant: m[1]!, name: m[2]! } : undefined;
}

function parseMeta(meta: string): MessageMeta {
  try {
    const m = JSON.parse(meta) as MessageMeta;
    if (m && typeof m === "object") return m;
  } catch {}
  return { ct: "text", sender: "unknown" };
}

/** The API view of a stored message. */
export function messageView(m: MessageInfo): MessageView {
  const meta = parseMeta(m.meta);
  return {
    id: m.id,
    state: m.state,
    attempts: m.attempts,
    enqueuedAt: new Date(m.enqueuedAt).toISOString(),
    finishedAt: m.finishedAt === null ? null : new Date(m.finishedAt).toISOString(),
    error: m.error,
    deadReason: m.deadReason,
    bodyBytes: m.bodyBytes,
    contentType: meta.ct,
    sender: meta.sender,
  };
}

/** Settings of `create`. */
export interface CreateOptions {
  maxRetries?: number;
  dlq?: string;
  retentionMs?: number;
  maxBacklog?: number;
}

/** Named queues: definitions and sends. */
export class NamedQueues {
  readonly queue: Queue;
  private readonly store: Store;
  private readonly onEnqueued: (key: string) => void;
  /** Definitions by `tenant/name` (sends read them on every call). */
  private readonly cache = new Map<string, QueueRecord | null>();

  constructor(o: { store: Store; queue: Queue; onEnqueued?: (key: string) => void }) {
    this.store = o.store;
    this.queue = o.queue;
    this.onEnqueued = o.onEnqueued ?? (() => {});
  }

  /** A queue's definition, or undefined. */
  async find(tenant: string, name: string): Promise<QueueRecord | undefined> {
    const k = `${tenant}/${name}`;
    let r = this.cache.get(k);
    if (r === undefined) {
      r = (await this.store.getQueue(tenant, name)) ?? null;
      this.cache.set(k, r);
    }
    return r ?? undefined;
  }

  /** A queue's definition, or NIMBUS_QUEUE_NOT_FOUND. */
  async get(tenant: string, name: string): Promise<QueueRecord> {
    const r = QUEUE_NAME.test(name) ? await this.find(tenant, name) : undefined;
    if (!r) {
      throw new NimbusError(
        "NIMBUS_QUEUE_NOT_FOUND",
        `No queue named '${name.slice(0, 80)}'. Create it with 'nimbus queue create ${QUEUE_NAME.test(name) ? name : "<name>"}'.`,
      );
    }
    return r;
  }

  /** Creates a queue (NIMBUS_QUEUE_EXISTS if it exists). */
  async create(tenant: string, name: string, o: CreateOptions = {}): Promise<QueueView> {
    const bad = (m: string) => new NimbusError("NIMBUS_BAD_REQUEST", m);
    if (!QUEUE_NAME.test(name))
      throw bad(
        `Queue names are lower-case letters, digits and '-', starting with a letter (^[a-z][a-z0-9-]{0,62}$); got '${name.slice(0, 80)}'.`,
      );
    if (o.dlq !== undefined && (!QUEUE_NAME.test(o.dlq) || o.dlq === name))
      throw bad("--dlq must name another queue (^[a-z][a-z0-9-]{0,62}$).");
    if (
      o.maxRetries !== undefined &&
      !(Number.isInteger(o.maxRetries) && o.maxRetries >= 0 && o.maxRetries <= 100)
    )
      throw bad("--max-retries must be a whole number from 0 to 100.");
    if (o.retentionMs !== undefined && !(o.retentionMs >= 60_000 && o.retentionMs <= MAX_RETENTION_MS))
      throw bad("--retention must be from 1 minute to 14 days (e.g. 4d, 12h).");
    if (
      o.maxBacklog !== undefined &&
      !(Number.isInteger(o.maxBacklog) && o.maxBacklog >= 1 && o.maxBacklog <= MAX_BACKLOG)
    )
      throw bad(`--max-backlog must be a whole number from 1 to ${MAX_BACKLOG}.`);
    if (await this.find(tenant, name))
      throw new NimbusError(
        "NIMBUS_QUEUE_EXISTS",
        `Queue '${name}' exists already; see 'nimbus queue info ${name}'.`,
      );
    const rec: QueueRecord = {
      tenant,
      name,
      maxRetries: o.maxRetries ?? QUEUE_DEFAULTS.maxRetries,
      dlq: o.dlq ?? null,
      retentionMs: o.retentionMs ?? QUEUE_DEFAULTS.retentionMs,
      maxBacklog: o.maxBacklog ?? QUEUE_DEFAULTS.maxBacklog,
      createdAt: Date.now(),
    };
    await this.store.putQueue(rec);
    this.cache.set(`${tenant}/${name}`, rec);
    return this.view(rec);
  }

  private async view(r: QueueRecord): Promise<QueueView> {
    return {
      name: r.name,
      maxRetries: r.maxRetries,
      dlq: r.dlq,
      retentionSeconds: Math.round(r.retentionMs / 1000),
      maxBacklog: r.maxBacklog,
      createdAt: new Date(r.createdAt).toISOString(),
      stats: await this.queue.stats(queueKey(r.tenant, r.name)),
    };
  }

  async list(tenant: string): Promise<QueueView[]> {
    return Promise.all((await this.store.listQueues(tenant)).map((r) => this.view(r)));
  }

  async info(tenant: string, name: string): Promise<QueueView> {
    return this.view(await this.get(tenant, name));
  }

  /** Deletes a queue with its waiting and dead messages (leased ones finish, then go). */
  async remove(tenant: string, name: string): Promise<void> {
    await this.get(tenant, name);
    await this.store.deleteQueue(tenant, name);
    this.cache.delete(`${tenant}/${name}`);
    const k = queueKey(tenant, name);
    await this.queue.purge(k, "ready");
    await this.queue.purge(k, "dead");
  }

  /** Deletes the waiting messages. */
  async purge(tenant: string, name: string): Promise<number> {
    await this.get(tenant, name);
    return this.queue.purge(queueKey(tenant, name), "ready");
  }

  /**
   * Stores messages durably; resolves with their ids. Checks the limits (128 KB a message,
   * 100 and 256 KB a batch, delays up to 12 h) and the queue's backlog (429).
   */
  async send(
    tenant: string,
    name: string,
    items: SendItem[],
    sender: string,
    origin?: MessageMeta["origin"],
  ): Promise<string[]> {
    const def = await this.get(tenant, name);
    checkSend(items);
    const k = queueKey(tenant, name);
    let ids: string[];
    try {
      const r = await this.queue.enqueue(
        k,
        items.map((i) => ({
          id: uuidv7(),
          body: i.body,
          delayMs: (i.delaySeconds ?? 0) * 1000,
          meta: JSON.stringify({ ct: i.contentType, sender, origin } satisfies MessageMeta),
        })),
        { maxDepth: def.maxBacklog },
      );
      ids = r.map((x) => x.id);
    } catch (err) {
      if (err instanceof QueueFullError) {
        throw new NimbusError(
          "NIMBUS_QUEUE_BACKLOG_FULL",
          `Queue '${name}' holds ${def.maxBacklog} undelivered messages (its maxBacklog); retry after 1 second.`,
          { headers: { "retry-after": "1" } },
        );
      }
      throw new NimbusError("NIMBUS_QUEUE_UNAVAILABLE", undefined, { cause: err });
    }
    this.onEnqueued(k);
    return ids;
  }

  /**
   * A send through a function's producer binding (a QUEUE_SEND frame, already checked by
   * the frame guard): the binding must be one of the function's (`producers`).
   */
  async sendFromFunction(
    tenant: string,
    fn: string,
    producers: Record<string, string>,
    meta: QueueSendMeta,
    payload: Buffer,
  ): Promise<string[]> {
    const name = Object.hasOwn(producers, meta.binding) ? producers[meta.binding] : undefined;
    if (!name)
      throw new NimbusError(
        "NIMBUS_QUEUE_NOT_BOUND",
        `Function '${fn}' has no producer binding '${meta.binding}'.`,
      );
    const items: SendItem[] = [];
    let off = 0;
    for (const m of meta.messages) {
      items.push({
        body: payload.subarray(off, off + m.bytes),
        contentType: m.contentType,
        delaySeconds: m.delaySeconds,
      });
      off += m.bytes;
    }
    return this.send(tenant, name, items, `fn:${fn}`);
  }

  /** Dead messages of a queue, newest first. */
  async dead(tenant: string, name: string, limit = 100): Promise<MessageView[]> {
    await this.get(tenant, name);
    return (await this.queue.list(queueKey(tenant, name), { state: "dead", limit })).map(messageView);
  }

  /** Recent messages of a queue (any state), newest first. */
  async messages(tenant: string, name: string, limit = 100): Promise<MessageView[]> {
    await this.get(tenant, name);
    return (await this.queue.list(queueKey(tenant, name), { limit })).map(messageView);
  }

  /** Dead messages back to waiting, attempts reset. */
  async redrive(tenant: string, name: string, ids?: string[]): Promise<number> {
    await this.get(tenant, name);
    const k = queueKey(tenant, name);
    const n = await this.queue.redrive(k, ids);
    if (n > 0) this.onEnqueued(k);
    return n;
  }

  async purgeDead(tenant: string, name: string): Promise<number> {
    await this.get(tenant, name);
    return this.queue.purge(queueKey(tenant, name), "dead");
  }
}

/** Checks a send against the limits (the same as the runtime's, checked again here). */
export function checkSend(items: SendItem[]): void {
  if (items.length === 0 || items.length > QUEUE_LIMITS.batchMessages)
    throw new NimbusError(
      "NIMBUS_BAD_REQUEST",
      `A send holds 1 to ${QUEUE_LIMITS.batchMessages} messages, got ${items.length}.`,
    );
  let total = 0;
  for (const i of items) {
    if (i.body.byteLength > QUEUE_LIMITS.messageBytes)
      throw new NimbusError(
        "NIMBUS_PAYLOAD_TOO_LARGE",
        `A message body is ${i.body.byteLength} bytes; queues take at most ${QUEUE_LIMITS.messageBytes} (128 KB). Send large payloads by reference.`,
      );
    total += i.body.byteLength;
    const d = i.delaySeconds;
    if (d !== undefined && !(Number.isInteger(d) && d >= 0 && d <= QUEUE_LIMITS.delaySeconds))
      throw new NimbusError(
        "NIMBUS_BAD_REQUEST",
        `delaySeconds must be a whole number from 0 to ${QUEUE_LIMITS.delaySeconds}.`,
      );
  }
  if (total > QUEUE_LIMITS.batchBytes)
    throw new NimbusError(
      "NIMBUS_PAYLOAD_TOO_LARGE",
      `A batch holds at most ${QUEUE_LIMITS.batchBytes} bytes (256 KB) of bodies, got ${total}.`,
    );
}
