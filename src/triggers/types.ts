/**
 * What every trigger adapter (MQTT, NATS) shares: the status it reports, the messages it
 * hands to its batcher, and the durable sink batches go to. Adapters know brokers, not HTTP.
 */

/** A trigger's connection state. */
export type TriggerState = "connecting" | "connected" | "retrying" | "stopped";

/** What `GET /api/v1/triggers` shows per trigger. */
export interface TriggerStatus {
  function: string;
  /** Index in the function's `triggers` list. */
  index: number;
  type: "mqtt" | "nats";
  /** `mqtt://127.0.0.1:1883 sensors/+/temp` */
  target: string;
  state: TriggerState;
  /** The last connection or storage error, if any. */
  lastError: string | null;
  lastErrorAt: string | null;
  /** When it last connected. */
  connectedAt: string | null;
  /** Connection attempts that failed in a row. */
  retries: number;
  /** Messages received / stored durably (then acknowledged) / dropped (too large, over the buffer). */
  received: number;
  stored: number;
  dropped: number;
}

/** One broker message waiting in a batcher. */
export interface Incoming {
  /** Topic or subject. */
  subject: string;
  data: Buffer;
  attributes: Record<string, string>;
  /** ms since the epoch it arrived. */
  at: number;
  /** Called once: true after the batch is stored durably (ack), false when it never will be (nak). */
  settle(ok: boolean): void;
}

/** Stores one batch durably (resolves once it would survive a crash). */
export type BatchSink = (messages: Incoming[]) => Promise<void>;

/** A running trigger. */
export interface TriggerAdapter {
  start(): void;
  status(): TriggerStatus;
  close(): Promise<void>;
}

/** A trigger's status before its first connection attempt. */
export function initialStatus(
  fn: string,
  index: number,
  type: TriggerStatus["type"],
  target: string,
): TriggerStatus {
  return {
    function: fn,
    index,
    type,
    target,
    state: "connecting",
    lastError: null,
    lastErrorAt: null,
    connectedAt: null,
    retries: 0,
    received: 0,
    stored: 0,
    dropped: 0,
  };
}
