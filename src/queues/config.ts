/**
 * The `queues` part of a function's config: the named queues it sends to (producer
 * bindings) and the ones it drains (consumers). Validated here; `validateEventConfig`
 * merges it in.
 *
 * ```ts
 * export const config = {
 *   queues: {
 *     producers: { JOBS: "jobs" },                       // env.JOBS.send(body)
 *     consumers: [{ queue: "jobs", batchSize: 10, maxWait: "1s", maxRetries: 3,
 *                   deadLetterQueue: "jobs-dlq", concurrency: 2 }],
 *   },
 * };
 * ```
 */
import { NimbusError } from "../errors.ts";

/** A queue name: DNS-label rules, as function names. */
export const QUEUE_NAME = /^[a-z][a-z0-9-]{0,62}$/;
/** A binding name: what the function reads from `env` (an identifier in capitals). */
export const BINDING_NAME = /^[A-Z_][A-Z0-9_]{0,63}$/;

/** How one function drains one queue. */
export interface ConsumerConfig {
  queue: string;
  /** Messages per batch, at most. @default 10 */
  batchSize: number;
  /** How long a partial batch waits for more messages, ms. @default 1000 */
  maxWaitMs: number;
  /** Retries of a message after its first failed delivery (then the DLQ). @default the queue's (3) */
  maxRetries?: number;
  /** Queue dead messages are forwarded to. @default the queue's `--dlq`, if any */
  deadLetterQueue?: string;
  /** Batches of this queue delivered at once. @default 1 */
  concurrency: number;
  /** Delay of a retry when the function asked none, before backoff, ms. @default 1000 */
  retryDelayMs?: number;
}

/** The queue settings of a function. */
export interface QueueBindings {
  /** Binding name → queue name. */
  producers: Record<string, string>;
  consumers: ConsumerConfig[];
}

/** Most producer bindings and consumers per function. */
export const MAX_BINDINGS = 20;

function bad(field: string, message: string): NimbusError {
  return new NimbusError("NIMBUS_BAD_CONFIG", `config.${field}: ${message}`, { details: { field } });
}

function int(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw bad(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}.`);
  return v;
}

/** Parses `"1s"`, `"500ms"`, `"2m"` or seconds (a number) into ms. */
export function parseDuration(field: string, v: unknown): number {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return Math.round(v * 1000);
  if (typeof v === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(v);
    if (m)
      return Math.round(
        Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s"],
      );
  }
  throw bad(
    field,
    `must be seconds (a number) or a string like "500ms", "1s", "2m"; got ${JSON.stringify(v)}.`,
  );
}

function queueName(field: string, v: unknown): string {
  if (typeof v !== "string" || !QUEUE_NAME.test(v))
    throw bad(field, `must be a queue name (^[a-z][a-z0-9-]{0,62}$), got ${JSON.stringify(v)}.`);
  return v;
}

/** Validates `config.queues`. */
export function validateQueueBindings(raw: unknown): QueueBindings {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw bad(
      "queues",
      'must be an object like { "producers": { "JOBS": "jobs" }, "consumers": [{ "queue": "jobs" }] }.',
    );
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (k !== "producers" && k !== "consumers")
      throw bad(`queues.${k}`, "unknown field. Known fields: producers, consumers.");
  const out: QueueBindings = { producers: {}, consumers: [] };
  if (r.producers !== undefined) {
    const p = r.producers;
    if (typeof p !== "object" || p === null || Array.isArray(p))
      throw bad("queues.producers", 'must map binding names to queue names, e.g. { "JOBS": "jobs" }.');
    const entries = Object.entries(p as Record<string, unknown>);
    if (entries.length > MAX_BINDINGS) throw bad("queues.producers", `at most ${MAX_BINDINGS} bindings.`);
    for (const [b, q] of entries) {
      if (!BINDING_NAME.test(b))
        throw bad(
          `queues.producers.${b.slice(0, 64)}`,
          "a binding name is capitals, digits and _ (e.g. JOBS).",
        );
      out.producers[b] = queueName(`queues.producers.${b}`, q);
    }
  }
  if (r.consumers !== undefined) {
    if (!Array.isArray(r.consumers) || r.consumers.length > MAX_BINDINGS)
      throw bad(
        "queues.consumers",
        `must be a list of up to ${MAX_BINDINGS} consumers like { "queue": "jobs" }.`,
      );
    const seen = new Set<string>();
    r.consumers.forEach((c, i) => {
      const f = `queues.consumers[${i}]`;
      if (typeof c !== "object" || c === null || Array.isArray(c))
        throw bad(f, 'must be an object like { "queue": "jobs" }.');
      const o = c as Record<string, unknown>;
      const known = [
        "queue",
        "batchSize",
        "maxWait",
        "maxRetries",
        "deadLetterQueue",
        "concurrency",
        "retryDelay",
      ];
      for (const k of Object.keys(o))
        if (!known.includes(k)) throw bad(`${f}.${k}`, `unknown field. Known fields: ${known.join(", ")}.`);
      const queue = queueName(`${f}.queue`, o.queue);
      if (seen.has(queue)) throw bad(`${f}.queue`, `'${queue}' is consumed twice by this function.`);
      seen.add(queue);
      const cc: ConsumerConfig = {
        queue,
        batchSize: o.batchSize === undefined ? 10 : int(`${f}.batchSize`, o.batchSize, 1, 100),
        maxWaitMs: o.maxWait === undefined ? 1000 : parseDuration(`${f}.maxWait`, o.maxWait),
        concurrency: o.concurrency === undefined ? 1 : int(`${f}.concurrency`, o.concurrency, 1, 100),
      };
      if (o.maxRetries !== undefined) cc.maxRetries = int(`${f}.maxRetries`, o.maxRetries, 0, 100);
      if (cc.maxWaitMs > 60_000) throw bad(`${f}.maxWait`, "must be at most 60 seconds.");
      if (o.deadLetterQueue !== undefined) {
        cc.deadLetterQueue = queueName(`${f}.deadLetterQueue`, o.deadLetterQueue);
        if (cc.deadLetterQueue === queue)
          throw bad(`${f}.deadLetterQueue`, "must be another queue than the one consumed.");
      }
      if (o.retryDelay !== undefined) {
        cc.retryDelayMs = parseDuration(`${f}.retryDelay`, o.retryDelay);
        if (cc.retryDelayMs > 43_200_000) throw bad(`${f}.retryDelay`, "must be at most 12 hours.");
      }
      out.consumers.push(cc);
    });
  }
  return out;
}
