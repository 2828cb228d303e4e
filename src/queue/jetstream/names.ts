/**
 * Names of the JetStream queue's streams, subjects, consumers and keys. Queue names and
 * message ids are opaque strings, so they travel base64url-encoded: the result is a valid
 * subject token, consumer name and KV key part whatever the caller chose.
 */
import { createHash } from "node:crypto";

/** Longest queue name or message id accepted (their tokens grow by a third). */
export const MAX_NAME_CHARS = 200;

/** `abc` → `YWJj`: a subject/key token for an opaque string. */
export function token(s: string): string {
  return Buffer.from(s, "utf8").toString("base64url");
}

/** The inverse of {@link token}. */
export function untoken(t: string): string {
  return Buffer.from(t, "base64url").toString("utf8");
}

/** Streams, subjects and keys under one prefix (several clusters or tests share one NATS). */
export class Names {
  /** Work-queue stream: one subject per queue; a message leaves it when acked or terminated. */
  readonly workStream: string;
  /** Dead letters: limits retention, kept until redriven or purged. */
  readonly deadStream: string;
  /** KV bucket of message states and de-duplication keys. */
  readonly stateBucket: string;
  private readonly subject: string;

  constructor(prefix: string) {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(prefix)) {
      throw new Error(`JetStream queue prefix '${prefix}' must be 1-32 letters, digits, '-' or '_'.`);
    }
    this.workStream = `${prefix}_QWORK`;
    this.deadStream = `${prefix}_QDEAD`;
    this.stateBucket = `${prefix}_qstate`;
    this.subject = prefix.toLowerCase();
  }

  /** Subjects of every queue's work. */
  get workAll(): string {
    return `${this.subject}.qw.>`;
  }

  /** Subjects of every queue's dead letters. */
  get deadAll(): string {
    return `${this.subject}.qd.>`;
  }

  work(queue: string): string {
    return `${this.subject}.qw.${token(queue)}`;
  }

  dead(queue: string): string {
    return `${this.subject}.qd.${token(queue)}`;
  }

  /** The queue named by a work subject, or undefined when the subject is not one. */
  queueOfWork(subject: string): string | undefined {
    const head = `${this.subject}.qw.`;
    return subject.startsWith(head) ? untoken(subject.slice(head.length)) : undefined;
  }

  /** The durable pull consumer of a queue. */
  consumer(queue: string): string {
    return `q_${token(queue)}`;
  }

  /** The state record of a message. */
  stateKey(queue: string, id: string): string {
    return `m.${token(queue)}.${token(id)}`;
  }

  /** Filter over the state records of one queue. */
  stateOfQueue(queue: string): string {
    return `m.${token(queue)}.*`;
  }

  /** Filter finding a message's record by id alone (any queue). */
  stateOfId(id: string): string {
    return `m.*.${token(id)}`;
  }

  /** The claim of a de-duplication key (hashed: keys may be long). */
  dedupKey(queue: string, key: string): string {
    return `k.${token(queue)}.${createHash("sha256").update(key).digest("base64url")}`;
  }

  /** Filter over every de-duplication claim. */
  get dedupAll(): string {
    return "k.>";
  }
}

/** What the ack subject of a delivered JetStream message says. */
export interface Delivery {
  /** The message's stream sequence. */
  streamSeq: number;
  /** How many times the server has delivered it (1 = first). */
  delivered: number;
}

/**
 * Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>` (2.9), or the
 * longer 2.10+ form with domain and account in front: the numbers are counted from the end.
 */
export function parseAckSubject(reply: string): Delivery | undefined {
  const t = reply.split(".");
  if (t[0] !== "$JS" || t[1] !== "ACK" || t.length < 9) return undefined;
  const delivered = Number(t[t.length - 5]);
  const streamSeq = Number(t[t.length - 4]);
  if (!Number.isSafeInteger(delivered) || !Number.isSafeInteger(streamSeq) || streamSeq < 1) return undefined;
  return { streamSeq, delivered };
}
