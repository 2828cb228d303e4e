/**
 * The Queue seam: durable messages with leases. The embedded default is SQLite
 * (`./sqlite/`); a JetStream implementation will pass the same contract suite
 * (`./contract.ts`). Async invocations, named queues and trigger messages all travel
 * through it.
 *
 * Delivery is at-least-once: a leased message that is neither acked, nacked nor
 * dead-lettered before its lease ends becomes available again (a crashed consumer or
 * server returns its work to the queue). Every lease counts as an attempt.
 */

/** Where a message is. */
export type MessageState =
  /** Waiting (possibly delayed until `availableAt`). */
  | "ready"
  /** Held by a consumer until `leaseUntil`. */
  | "leased"
  /** Acknowledged: done (kept for the retention window so its outcome can be read). */
  | "succeeded"
  /** In the dead-letter queue (failed too often, or too old: see `deadReason`). */
  | "dead";

/** One message to enqueue. */
export interface EnqueueInput {
  /** Opaque bytes. */
  body: Uint8Array;
  /** Opaque metadata (a JSON string), returned with the message. @default "{}" */
  meta?: string;
  /** Set the id (e.g. a time-ordered UUID); one is generated otherwise. */
  id?: string;
  /** Not deliverable before this many ms. @default 0 */
  delayMs?: number;
  /**
   * De-duplication key: a second enqueue with the same key within the queue's dedup window
   * returns the first message's id with `duplicate: true` and stores nothing.
   */
  dedupKey?: string;
}

/** What an enqueue gave. */
export interface EnqueueResult {
  id: string;
  /** True when `dedupKey` matched an earlier message in the window. */
  duplicate: boolean;
}

/** A message handed to a consumer under a lease. */
export interface LeasedMessage {
  id: string;
  queue: string;
  body: Buffer;
  meta: string;
  /** Leases so far, this one included (1 on the first delivery). */
  attempts: number;
  /** When it was enqueued (or redriven), ms since the epoch. */
  enqueuedAt: number;
  /** Proves the lease: ack/nack/deadLetter with a stale token do nothing. */
  token: string;
  leaseUntil: number;
}

/** Everything known about one message. */
export interface MessageInfo {
  id: string;
  queue: string;
  state: MessageState;
  attempts: number;
  enqueuedAt: number;
  availableAt: number;
  firstAttemptAt: number | null;
  lastAttemptAt: number | null;
  finishedAt: number | null;
  /** Set by ack (e.g. the function's response). */
  result: string | null;
  /** The last failure (nack or dead-letter). */
  error: string | null;
  /** Why it is dead: `failed` (out of attempts) or `expired` (too old). */
  deadReason: "failed" | "expired" | null;
  meta: string;
  bodyBytes: number;
}

/** Counts per state. */
export interface QueueStats {
  /** Deliverable now. */
  ready: number;
  /** Waiting for a retry delay. */
  delayed: number;
  leased: number;
  dead: number;
  succeeded: number;
}

/** One queue's undelivered messages by state, and its oldest deliverable message (metrics). */
export interface QueueOverview extends Omit<QueueStats, "succeeded"> {
  queue: string;
  /** Enqueue time (ms since the epoch) of its oldest ready or leased message. */
  oldestAt: number | undefined;
}

/** Thrown by enqueue when a queue holds `maxDepth` undelivered messages. */
export class QueueFullError extends Error {
  readonly queue: string;
  readonly depth: number;
  constructor(queue: string, depth: number) {
    super(`Queue '${queue}' holds ${depth} undelivered messages, its limit.`);
    this.name = "QueueFullError";
    this.queue = queue;
    this.depth = depth;
  }
}

/** Options every implementation takes. */
export interface QueueOptions {
  /** The clock (tests step it). @default Date.now */
  clock?: () => number;
  /** Undelivered (ready + leased) messages per queue, at most. @default 100000 */
  maxDepth?: number;
  /** How long a `dedupKey` is remembered, ms. @default 86400000 (24 h) */
  dedupWindowMs?: number;
  /** How long succeeded messages are kept for reading, ms. @default 86400000 (24 h) */
  retentionMs?: number;
}

/** The seam. Queue names are opaque strings (`fn/<tenant>/<name>`, `q/<tenant>/<name>`). */
export interface Queue {
  /**
   * Stores messages durably; resolves only once they would survive a crash. `maxDepth`
   * overrides the queue-wide bound for this call (a function's own limit).
   */
  enqueue(queue: string, items: EnqueueInput[], opts?: { maxDepth?: number }): Promise<EnqueueResult[]>;
  /** Leases up to `max` deliverable messages for `leaseMs`, oldest first. */
  lease(queue: string, max: number, leaseMs: number): Promise<LeasedMessage[]>;
  /** Extends a lease held with `token`; false when the lease is gone. */
  extend(id: string, token: string, leaseMs: number): Promise<boolean>;
  /** Marks a leased message done, keeping `result`; false when the lease is gone. */
  ack(id: string, token: string, result?: string): Promise<boolean>;
  /**
   * Returns a leased message to the queue after `delayMs`, noting `error`. With
   * `uncount`, this lease does not count as an attempt (the consumer never got to run it:
   * throttled, shutting down).
   */
  nack(
    id: string,
    token: string,
    delayMs: number,
    error: string,
    opts?: { uncount?: boolean },
  ): Promise<boolean>;
  /** Moves a leased message to the dead-letter queue. */
  deadLetter(id: string, token: string, error: string, reason: "failed" | "expired"): Promise<boolean>;
  get(id: string): Promise<MessageInfo | undefined>;
  /** Newest first. */
  list(queue: string, opts?: { state?: MessageState; limit?: number }): Promise<MessageInfo[]>;
  /** The message's body (for DLQ inspection). */
  body(id: string): Promise<Buffer | undefined>;
  /** Dead messages (all, or those named) back to ready with attempts reset. Returns how many. */
  redrive(queue: string, ids?: string[]): Promise<number>;
  /** Deletes the dead (or the ready) messages of a queue. Returns how many. */
  purge(queue: string, which: "dead" | "ready"): Promise<number>;
  stats(queue: string): Promise<QueueStats>;
  /**
   * Queues that hold deliverable work now (for dispatchers after a restart). A hint: on a
   * replicated store a queue whose last message was just acked may still be named briefly.
   */
  queuesWithWork(): Promise<string[]>;
  /** Every queue holding undelivered or dead messages, with its depths (one query; metrics). */
  overview?(): Promise<QueueOverview[]>;
  close(): Promise<void>;
}
