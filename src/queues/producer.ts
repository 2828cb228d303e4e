/**
 * The platform's end of producer bindings, shared by both executors: a QUEUE_SEND frame
 * (checked by the frame guard) is mapped to the sending function's binding, stored through
 * the {@link QueueSender}, and answered with QUEUE_SENT. Sends waiting per instance are
 * bounded (the runtime never has more than {@link QUEUE_LIMITS.pendingSends} out).
 */
import { NimbusError } from "../errors.ts";
import { checkQueueBinding, FrameViolation } from "../invoker/frame-guard.ts";
import type { Frame } from "../runtime/protocol.ts";
import { QUEUE_LIMITS, type QueueSendMeta, type QueueSentMeta } from "../runtime/queue-send.ts";

/** Stores a function's send; resolves with the message ids (throws NimbusError). */
export type QueueSender = (
  fn: { tenant: string; functionName: string; version: number },
  meta: QueueSendMeta,
  payload: Buffer,
) => Promise<string[]>;

/** One instance's sends. */
export class SendGate {
  private pending = 0;

  /**
   * Handles a QUEUE_SEND frame. `bindings` are the instance's function's producer binding
   * names; `reply` sends QUEUE_SENT; `violate` stops the instance (a forged or flooding frame).
   */
  handle(
    f: Frame,
    fn: { tenant: string; functionName: string; version: number; queues?: string[] } | undefined,
    sender: QueueSender | undefined,
    reply: (id: number, meta: QueueSentMeta) => void,
    violate: (why: string) => void,
  ): void {
    const m = f.meta as QueueSendMeta;
    try {
      if (!fn) throw new FrameViolation("queue send before a function was loaded");
      checkQueueBinding(m.binding, fn.queues);
      if (this.pending >= QUEUE_LIMITS.pendingSends)
        throw new FrameViolation(`more than ${QUEUE_LIMITS.pendingSends} queue sends waiting at once`);
    } catch (err) {
      violate(err instanceof Error ? err.message : String(err));
      return;
    }
    if (!sender) {
      reply(f.id, {
        req: m.req,
        ok: false,
        error: { code: "NIMBUS_UNAVAILABLE", message: "Queues are not available here." },
      });
      return;
    }
    this.pending++;
    sender(fn, m, f.payload)
      .then(
        (ids) => reply(f.id, { req: m.req, ok: true, ids }),
        (err: unknown) => {
          const e = err instanceof NimbusError ? err : new NimbusError("NIMBUS_QUEUE_UNAVAILABLE");
          reply(f.id, { req: m.req, ok: false, error: { code: e.code, message: e.message } });
        },
      )
      .finally(() => {
        this.pending--;
      });
  }
}
