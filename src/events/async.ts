/**
 * Async invocations: accept an event (stored durably before the caller gets 202), and show
 * its state. Delivery is the dispatcher's job (`./dispatcher.ts`).
 */
import { NimbusError } from "../errors.ts";
import { uuidv7 } from "../invoker/invoker.ts";
import type { MessageInfo, Queue } from "../queue/types.ts";
import { QueueFullError } from "../queue/types.ts";
import type { VersionRecord } from "../store/types.ts";
import { EVENT_DEFAULTS } from "./config.ts";

/**
 * An async invocation's state, as users see it. Every function has a dead-letter queue,
 * so an event out of retries is `dead-lettered` (there is no separate `failed` end state).
 */
export type InvocationState = "queued" | "running" | "succeeded" | "retrying" | "dead-lettered" | "expired";

/** What a queued event carries besides its body (the queue's `meta`). */
export interface EventMeta {
  tenant: string;
  fn: string;
  /** Pinned version (`/fn/name@3`); latest at delivery time otherwise. */
  version?: number;
  /** `http`: the same request a synchronous call delivers; `event`: a JSON payload; `scheduled`: a cron tick; `queue`: a trigger batch. */
  kind: "http" | "event" | "scheduled" | "queue";
  method: string;
  path: string;
  host: string;
  headers: [string, string][];
  sourceIp: string;
  /** What produced it (`async`, `destination`, `cron`, …). */
  trigger: string;
}

/** An async invocation as the API shows it. */
export interface InvocationView {
  invocationId: string;
  function: string;
  state: InvocationState;
  attempts: number;
  enqueuedAt: string;
  firstAttemptAt: string | null;
  lastAttemptAt: string | null;
  finishedAt: string | null;
  /** Enqueue to first attempt, ms. */
  queueWaitMs: number | null;
  /** Enqueue to the terminal outcome, ms. */
  endToEndMs: number | null;
  /** Delivered next (for a retry), when waiting. */
  nextAttemptAt: string | null;
  result: { status: number; body: string; bodyBytes: number } | null;
  error: string | null;
  trigger: string;
}

/** The queue holding a function's async events. */
export function functionQueue(tenant: string, fn: string): string {
  return `fn/${tenant}/${fn}`;
}

/** Splits a function queue name; undefined for other queues. */
export function parseFunctionQueue(name: string): { tenant: string; fn: string } | undefined {
  const m = /^fn\/([^/]+)\/([a-z][a-z0-9-]{0,62})$/.exec(name);
  return m ? { tenant: m[1]!, fn: m[2]! } : undefined;
}

/** The user-facing state of a stored message. */
export function stateOf(m: Pick<MessageInfo, "state" | "attempts" | "deadReason">): InvocationState {
  switch (m.state) {
    case "ready":
      return m.attempts === 0 ? "queued" : "retrying";
    case "leased":
      return "running";
    case "succeeded":
      return "succeeded";
    case "dead":
      return m.deadReason === "expired" ? "expired" : "dead-lettered";
  }
}

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

/** The API view of a stored message. */
export function toView(m: MessageInfo): InvocationView {
  let meta: Partial<EventMeta> = {};
  try {
    meta = JSON.parse(m.meta) as EventMeta;
  } catch {}
  const state = stateOf(m);
  let result: InvocationView["result"] = null;
  if (m.result) {
    try {
      result = JSON.parse(m.result);
    } catch {}
  }
  return {
    invocationId: m.id,
    function: meta.fn ?? "",
    state,
    attempts: m.attempts,
    enqueuedAt: new Date(m.enqueuedAt).toISOString(),
    firstAttemptAt: iso(m.firstAttemptAt),
    lastAttemptAt: iso(m.lastAttemptAt),
    finishedAt: iso(m.finishedAt),
    queueWaitMs: m.firstAttemptAt === null ? null : m.firstAttemptAt - m.enqueuedAt,
    endToEndMs: m.finishedAt === null ? null : m.finishedAt - m.enqueuedAt,
    nextAttemptAt: state === "retrying" || state === "queued" ? iso(m.availableAt) : null,
    result,
    error: m.error,
    trigger: meta.trigger ?? "async",
  };
}

/** Options of the async service. */
export interface AsyncOptions {
  /** Largest event payload, bytes (as Lambda's async limit). @default 262144 (256 KB) */
  maxPayloadBytes?: number;
  /** Called after an event is stored (wakes the dispatcher). */
  onEnqueued?: (queue: string) => void;
}

/** Accepts and reads async invocations. */
export class AsyncInvocations {
  readonly queue: Queue;
  readonly maxPayloadBytes: number;
  private readonly onEnqueued: (queue: string) => void;

  constructor(queue: Queue, opts: AsyncOptions = {}) {
    this.queue = queue;
    this.maxPayloadBytes = opts.maxPayloadBytes ?? 256 * 1024;
    this.onEnqueued = opts.onEnqueued ?? (() => {});
  }

  /**
   * Stores one event for `v`'s function; resolves with its id once it is durable.
   * Throws NIMBUS_PAYLOAD_TOO_LARGE, NIMBUS_QUEUE_FULL (429) or NIMBUS_QUEUE_UNAVAILABLE (503).
   */
  async submit(
    v: VersionRecord,
    meta: EventMeta,
    body: Buffer,
    idempotencyKey?: string,
  ): Promise<{ id: string; duplicate: boolean }> {
    if (body.length > this.maxPayloadBytes) {
      throw new NimbusError(
        "NIMBUS_PAYLOAD_TOO_LARGE",
        `The event payload is ${body.length} bytes; async invocations take at most ${this.maxPayloadBytes} bytes. Send large payloads by reference (e.g. a URL).`,
      );
    }
    if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > 256)) {
      throw new NimbusError("NIMBUS_BAD_REQUEST", "The Idempotency-Key header must be 1 to 256 characters.");
    }
    const name = functionQueue(v.tenant, v.name);
    const max = v.config.maxQueuedEvents ?? EVENT_DEFAULTS.maxQueuedEvents;
    let r: { id: string; duplicate: boolean };
    try {
      [r] = (await this.queue.enqueue(
        name,
        [{ id: uuidv7(), body, meta: JSON.stringify(meta), dedupKey: idempotencyKey }],
        { maxDepth: max },
      )) as [{ id: string; duplicate: boolean }];
    } catch (err) {
      if (err instanceof QueueFullError) {
        throw new NimbusError(
          "NIMBUS_QUEUE_FULL",
          `Function '${v.name}' has ${max} async events waiting or running (its 'maxQueuedEvents'); retry after 1 second, or raise maxQueuedEvents.`,
          { headers: { "retry-after": "1" } },
        );
      }
      throw new NimbusError("NIMBUS_QUEUE_UNAVAILABLE", undefined, { cause: err });
    }
    this.onEnqueued(name);
    return r;
  }

  /** One invocation, or NIMBUS_INVOCATION_NOT_FOUND. */
  async get(tenant: string, id: string): Promise<InvocationView> {
    const m = await this.queue.get(id);
    if (!m?.queue.startsWith(`fn/${tenant}/`)) {
      throw new NimbusError("NIMBUS_INVOCATION_NOT_FOUND", `No async invocation '${id}'.`);
    }
    return toView(m);
  }

  /** Recent async invocations of a function, newest first. */
  async list(tenant: string, fn: string, limit = 50, state?: "dead"): Promise<InvocationView[]> {
    return (await this.queue.list(functionQueue(tenant, fn), { limit, state })).map(toView);
  }
}
