/**
 * What to do after a failed delivery attempt: a pure function of the attempt count, the
 * event's age and a random draw, with time passed in (tests step it).
 */

/** Inputs of the retry decision. */
export interface RetryInput {
  /** Attempts made so far, the failed one included (1 after the first failure). */
  attempts: number;
  /** Retries allowed after the first attempt. */
  retries: number;
  /** When the event was enqueued, ms since the epoch. */
  enqueuedAt: number;
  /** Events older than this are not delivered any more, ms. */
  maxEventAgeMs: number;
  /** Now, ms since the epoch. */
  now: number;
  /** A uniform draw in [0, 1) (Math.random in production). */
  random: number;
  /** Delay before the first retry, before jitter, ms. @default 1000 */
  baseMs?: number;
  /** Longest delay, ms. @default 300000 (5 minutes) */
  capMs?: number;
}

/** The decision. */
export type RetryDecision =
  | { action: "retry"; delayMs: number }
  | { action: "dead"; reason: "failed" | "expired" };

/**
 * Exponential backoff with "equal jitter": the n-th retry waits between half and all of
 * `base · 2^(n-1)` (capped), so retries of many events failing together spread out but
 * never come back sooner than half the nominal delay. With base 1 s: the first retry
 * after 0.5–1 s, the second after 1–2 s, the third after 2–4 s.
 */
export function decideRetry(i: RetryInput): RetryDecision {
  if (i.now - i.enqueuedAt >= i.maxEventAgeMs) return { action: "dead", reason: "expired" };
  if (i.attempts > i.retries) return { action: "dead", reason: "failed" };
  const base = i.baseMs ?? 1000;
  const cap = i.capMs ?? 300_000;
  // 2^(attempts-1) grows past the cap quickly; clamp the exponent so it never overflows.
  const nominal = Math.min(cap, base * 2 ** Math.min(30, i.attempts - 1));
  const delayMs = Math.round(nominal / 2 + (nominal / 2) * Math.min(Math.max(i.random, 0), 1));
  // A retry that could only start after the event expired is not worth scheduling.
  if (i.now + delayMs - i.enqueuedAt >= i.maxEventAgeMs) return { action: "dead", reason: "expired" };
  return { action: "retry", delayMs };
}

/** Whether a leased event is already too old to deliver. */
export function isExpired(enqueuedAt: number, maxEventAgeMs: number, now: number): boolean {
  return now - enqueuedAt >= maxEventAgeMs;
}
