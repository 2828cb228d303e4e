/**
 * The event-delivery part of a function's config: retries, maximum event age, async queue
 * bound and destinations. Validated here; `validateConfig` merges it in.
 */
import { Cron } from "croner";
import { NimbusError } from "../errors.ts";
import { type QueueBindings, validateQueueBindings } from "../queues/config.ts";
import { type TriggerConfig, validateTriggers } from "../triggers/config.ts";

/** Where a finished async invocation is reported: `fn:<name>` or an http(s) URL. */
export type Destination = string;

/** Event-delivery settings of a function. */
export interface EventConfig {
  /** Retries after a failed async attempt (as Lambda). @default 2 */
  retries?: number;
  /** An event older than this is not delivered any more (state `expired`), ms. @default 21600000 (6 h) */
  maxEventAgeMs?: number;
  /** Async events waiting or running at most; more are refused with 429 NIMBUS_QUEUE_FULL. @default 10000 */
  maxQueuedEvents?: number;
  /** Reports of finished async invocations, as CloudEvents 1.0. */
  destinations?: { onSuccess?: Destination; onFailure?: Destination };
  /** Cron schedules (5 fields, or 6 with seconds first), e.g. `"*\/5 * * * *"`. */
  schedule?: string[];
  /** IANA time zone of the schedules. @default the server's */
  timezone?: string;
  /** A tick missed while the server was down: `skip` it, or `run-once` at start. @default "skip" */
  missedTicks?: "skip" | "run-once";
  /** MQTT and NATS triggers (`../triggers/config.ts`). */
  triggers?: TriggerConfig[];
  /** Named queues it sends to and drains (`../queues/config.ts`). */
  queues?: QueueBindings;
}

/** Defaults of the event settings. */
export const EVENT_DEFAULTS = { retries: 2, maxEventAgeMs: 21_600_000, maxQueuedEvents: 10_000 } as const;

/** Config field names this file owns. */
export const EVENT_CONFIG_KEYS = [
  "retries",
  "maxEventAge",
  "maxQueuedEvents",
  "destinations",
  "schedule",
  "timezone",
  "missedTicks",
  "triggers",
  "queues",
] as const;

function bad(field: string, message: string): NimbusError {
  return new NimbusError("NIMBUS_BAD_CONFIG", `config.${field}: ${message}`, { details: { field } });
}

function duration(field: string, value: unknown): number {
  if (typeof value === "number" && Number.isFinite(value) && value > 0) return Math.round(value * 1000);
  if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(value);
    if (m) return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "s"]);
  }
  throw bad(
    field,
    `must be seconds (a number) or a string like "60s", "30m", "6h"; got ${JSON.stringify(value)}.`,
  );
}

function destination(field: string, value: unknown): Destination {
  if (typeof value === "string") {
    if (/^fn:[a-z][a-z0-9-]{0,62}$/.test(value)) return value;
    if (/^https?:\/\/[^\s]{1,2000}$/.test(value)) {
      try {
        new URL(value);
        return value;
      } catch {}
    }
  }
  throw bad(field, `must be "fn:<function name>" or an http(s) URL, got ${JSON.stringify(value)}.`);
}

/** Validates the event fields of a raw config. */
export function validateEventConfig(r: Record<string, unknown>): EventConfig {
  const c: EventConfig = {};
  if (r.retries !== undefined) {
    if (typeof r.retries !== "number" || !Number.isInteger(r.retries) || r.retries < 0 || r.retries > 10)
      throw bad("retries", `must be a whole number from 0 to 10, got ${JSON.stringify(r.retries)}.`);
    c.retries = r.retries;
  }
  if (r.maxEventAge !== undefined) {
    c.maxEventAgeMs = duration("maxEventAge", r.maxEventAge);
    if (c.maxEventAgeMs < 1000 || c.maxEventAgeMs > 6 * 3_600_000)
      throw bad("maxEventAge", "must be from 1 second to 6 hours.");
  }
  if (r.maxQueuedEvents !== undefined) {
    const n = r.maxQueuedEvents;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 1_000_000)
      throw bad("maxQueuedEvents", `must be a whole number from 1 to 1000000, got ${JSON.stringify(n)}.`);
    c.maxQueuedEvents = n;
  }
  if (r.destinations !== undefined) {
    const d = r.destinations;
    if (typeof d !== "object" || d === null || Array.isArray(d))
      throw bad("destinations", 'must be an object like { "onFailure": "fn:alerts" }.');
    const o = d as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (k !== "onSuccess" && k !== "onFailure")
        throw bad(`destinations.${k}`, "unknown field. Known fields: onSuccess, onFailure.");
    c.destinations = {};
    if (o.onSuccess !== undefined)
      c.destinations.onSuccess = destination("destinations.onSuccess", o.onSuccess);
    if (o.onFailure !== undefined)
      c.destinations.onFailure = destination("destinations.onFailure", o.onFailure);
  }
  if (r.timezone !== undefined) {
    if (typeof r.timezone !== "string" || r.timezone.length > 64)
      throw bad("timezone", 'must be an IANA time zone such as "Europe/Paris".');
    try {
      new Intl.DateTimeFormat("en", { timeZone: r.timezone });
    } catch {
      throw bad(
        "timezone",
        `unknown time zone ${JSON.stringify(r.timezone)}; use an IANA name such as "Europe/Paris".`,
      );
    }
    c.timezone = r.timezone;
  }
  if (r.schedule !== undefined) {
    const list = typeof r.schedule === "string" ? [r.schedule] : r.schedule;
    if (!Array.isArray(list) || list.length === 0 || list.length > 10)
      throw bad("schedule", 'must be a cron expression or a list of up to 10, e.g. "*/5 * * * *".');
    c.schedule = list.map((expr, i) => {
      const field = Array.isArray(r.schedule) ? `schedule[${i}]` : "schedule";
      if (typeof expr !== "string" || expr.length > 100)
        throw bad(field, "must be a cron expression string.");
      const fields = expr.trim().split(/\s+/).length;
      if (fields !== 5 && fields !== 6)
        throw bad(
          field,
          `must have 5 fields (minute first) or 6 (seconds first), got ${fields}: ${JSON.stringify(expr)}.`,
        );
      try {
        new Cron(expr, { paused: true, timezone: c.timezone }).stop();
      } catch (err) {
        throw bad(field, `${(err as Error).message} (${JSON.stringify(expr)}).`);
      }
      return expr.trim();
    });
  }
  if (r.missedTicks !== undefined) {
    if (r.missedTicks !== "skip" && r.missedTicks !== "run-once")
      throw bad("missedTicks", `must be "skip" or "run-once", got ${JSON.stringify(r.missedTicks)}.`);
    c.missedTicks = r.missedTicks;
  }
  if (r.triggers !== undefined) c.triggers = validateTriggers(r.triggers);
  if (r.queues !== undefined) c.queues = validateQueueBindings(r.queues);
  return c;
}
