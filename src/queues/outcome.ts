/**
 * What one delivery of a named-queue batch decided per message, read from what the function
 * answered (untrusted: only ids of the batch count, the text is bounded). Pure.
 */
import type { AttemptOutcome } from "../events/responder.ts";
import { OUTCOME_KEY } from "../runtime/batch.ts";

/** Per-message decision: ids to retry, with the delay the function asked (ms), if any. */
export interface BatchDecision {
  /** Message ids to retry → the delay asked (undefined: backoff). Others are acked. */
  retry: Map<string, number | undefined>;
  /** Why (for the messages' error), when anything is retried. */
  why: string;
}

/**
 * Reads the outcome of a batch delivery:
 * - a Workers `queue()` or fetch handler answers `{ nimbusQueueOutcome: { retry: [{ id, delaySeconds? }] } }`
 *   (the runtime builds it: status 500 when `queue()` threw, every message not acked retried);
 * - a Lambda handler answers `{ batchItemFailures: [{ itemIdentifier }] }` (SQS partial batch
 *   response), or nothing (all succeeded); an entry naming no message of the batch fails the
 *   whole batch, as on Lambda;
 * - an invocation that failed (an error, a timeout) without such an answer retries every message.
 */
export function decideBatch(out: AttemptOutcome, ids: readonly string[]): BatchDecision {
  const all = (why: string): BatchDecision => ({ retry: new Map(ids.map((id) => [id, undefined])), why });
  const inBatch = new Set(ids);
  let body: unknown;
  if (out.body.length > 0) {
    try {
      body = JSON.parse(out.body.toString("utf8"));
    } catch {
      body = undefined;
    }
  }
  const failed = out.error ? `${out.error.code}: ${out.error.message}` : `status ${out.status}`;
  const obj =
    body !== null && typeof body === "object" && !Array.isArray(body)
      ? (body as Record<string, unknown>)
      : undefined;
  const nimbus = obj?.[OUTCOME_KEY] as { retry?: unknown; error?: unknown } | undefined;
  if (nimbus && typeof nimbus === "object" && Array.isArray(nimbus.retry)) {
    const retry = new Map<string, number | undefined>();
    for (const r of nimbus.retry as unknown[]) {
      const id = (r as { id?: unknown })?.id;
      if (typeof id !== "string" || !inBatch.has(id)) continue;
      const d = (r as { delaySeconds?: unknown }).delaySeconds;
      retry.set(
        id,
        typeof d === "number" && Number.isFinite(d) ? Math.min(43_200, Math.max(0, d)) * 1000 : undefined,
      );
    }
    const why =
      typeof nimbus.error === "string"
        ? `queue() threw: ${nimbus.error.slice(0, 500)}`
        : "the function asked for a retry";
    return { retry, why };
  }
  if (!out.ok) return all(failed);
  if (obj && Array.isArray(obj.batchItemFailures)) {
    const retry = new Map<string, number | undefined>();
    for (const f of obj.batchItemFailures as unknown[]) {
      const id = (f as { itemIdentifier?: unknown })?.itemIdentifier;
      // As on Lambda: an identifier that is empty or not in the batch fails the whole batch.
      if (typeof id !== "string" || !inBatch.has(id))
        return all("batchItemFailures named a message not in the batch");
      retry.set(id, undefined);
    }
    return { retry, why: "listed in batchItemFailures" };
  }
  return { retry: new Map(), why: "" };
}
