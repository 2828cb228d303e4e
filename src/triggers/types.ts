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
  /** Messages received / stored durably / dropped (too large, over the buffer). */
  received: number;
  stored: number;
  dropped: number;
  /** MQTT QoS 1 and JetStream messages acknowledged to the broker (their event reached its outcome). */
  acked: number;
}

/** One broker message waiting in a batcher. */
export interface Incoming {
  /** Topic or subject. */
  subject: string;
  data: Buffer;
  attributes: Record<string, string>;
  /** ms since the epoch it arrived. */
  at: number;
  /**
   * True for a message the broker redelivers until acknowledged (MQTT QoS 1, JetStream): it
   * is settled when its event reaches its terminal outcome (succeeded, dead-lettered or
   * expired). Others (MQTT QoS 0, core NATS) are settled once their batch is stored.
   */
  ackOnOutcome: boolean;
  /** Called once: true to acknowledge, false when it will not be (nak; the broker redelivers). */
  settle(ok: boolean): void;
}

/** A batch stored durably as one async event. */
export interface StoredBatch {
  /** Resolves when the event reaches its terminal outcome; rejects when that cannot be learnt. */
  outcome(): Promise<unknown>;
  /** Stops waiting for the outcome (the trigger stopped). */
  cancel(): void;
}

/** Stores one batch durably (resolves once it would survive a crash). */
export type BatchSink = (messages: Incoming[]) => Promise<StoredBatch>;

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
    acked: 0,
  };
}
