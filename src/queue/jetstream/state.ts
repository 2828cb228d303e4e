/**
 * The state record the JetStream queue keeps per message in a KV bucket (the stream holds
 * the body; the record holds what the Queue seam reports and the lease). Records change
 * only by compare-and-set on the KV revision, so two nodes racing on one message cannot
 * both win.
 */
import type { MessageInfo } from "../types.ts";

/** One message's record: what the seam reports, and the lease and stream positions behind it. */
export interface StateRecord extends MessageInfo {
  /** Stream sequence of the live copy in the work stream; null until known (redrive in flight). */
  seq: number | null;
  /** Sequence of the first enqueue: listing order (newest first). */
  order: number;
  /** The current lease's token, or null. */
  token: string | null;
  leaseUntil: number | null;
  /** The ack subject of the current delivery (any node can ack, nak, term through it). */
  reply: string | null;
  /** Sequence of the copy in the dead-letter stream. */
  deadSeq: number | null;
  /** Times redriven: makes each redrive's Nats-Msg-Id new. */
  redrives: number;
}

/** The record a newly stored message starts with. */
export function freshRecord(
  id: string,
  queue: string,
  now: number,
  delayMs: number,
  meta: string,
  bodyBytes: number,
  seq: number,
): StateRecord {
  return {
    id,
    queue,
    state: "ready",
    attempts: 0,
    enqueuedAt: now,
    availableAt: now + Math.max(0, delayMs),
    firstAttemptAt: null,
    lastAttemptAt: null,
    finishedAt: null,
    result: null,
    error: null,
    deadReason: null,
    meta,
    bodyBytes,
    seq,
    order: seq,
    token: null,
    leaseUntil: null,
    reply: null,
    deadSeq: null,
    redrives: 0,
  };
}

/** What the seam reports about a record. */
export function toInfo(r: StateRecord): MessageInfo {
  return {
    id: r.id,
    queue: r.queue,
    state: r.state,
    attempts: r.attempts,
    enqueuedAt: r.enqueuedAt,
    availableAt: r.state === "leased" ? (r.leaseUntil ?? r.availableAt) : r.availableAt,
    firstAttemptAt: r.firstAttemptAt,
    lastAttemptAt: r.lastAttemptAt,
    finishedAt: r.finishedAt,
    result: r.result,
    error: r.error,
    deadReason: r.deadReason,
    meta: r.meta,
    bodyBytes: r.bodyBytes,
  };
}

/**
 * Parses a stored record. A malformed one (not written by Nimbus: the bucket is broker
 * input like any other) gives undefined, and callers treat the message as unknown.
 */
export function parseRecord(bytes: Uint8Array): StateRecord | undefined {
  try {
    const r = JSON.parse(Buffer.from(bytes).toString("utf8")) as StateRecord;
    if (typeof r !== "object" || r === null) return undefined;
    if (typeof r.id !== "string" || typeof r.queue !== "string" || typeof r.state !== "string")
      return undefined;
    if (typeof r.attempts !== "number" || typeof r.availableAt !== "number" || typeof r.order !== "number")
      return undefined;
    return r;
  } catch {
    return undefined;
  }
}

/** Encodes a record for the KV. */
export function encodeRecord(r: StateRecord): Uint8Array {
  return Buffer.from(JSON.stringify(r));
}
