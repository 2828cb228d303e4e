/**
 * Workers' `ScheduledController` for a cron tick, built the same way in both executors from
 * the tick's payload (EventBridge's scheduled event) and its `x-nimbus-cron` header.
 * Runs inside an instance: no platform imports.
 */
import { fromEventPayload } from "./lambda.ts";

/** What `scheduled(controller, env, ctx)` receives. */
export interface ScheduledController {
  /** The tick's time, ms since the epoch. */
  readonly scheduledTime: number;
  /** The cron expression that fired. */
  readonly cron: string;
  /**
   * Accepted for Workers compatibility. A failed run is retried per the function's
   * `retries` config (set `retries: 0` for schedules that must not run twice).
   */
  noRetry(): void;
}

/** The controller of a tick delivered with `payload` and `headers`. */
export function scheduledController(payload: Uint8Array, headers: [string, string][]): ScheduledController {
  const tick = fromEventPayload(payload) as { time?: unknown } | null;
  const time = typeof tick === "object" && tick !== null && typeof tick.time === "string" ? tick.time : "";
  let cron = "";
  for (const [k, v] of headers) if (k === "x-nimbus-cron") cron = v;
  return { scheduledTime: Date.parse(time) || Date.now(), cron, noRetry() {} };
}
