/**
 * Waiting for an async event's terminal outcome (succeeded, dead-lettered or expired): the
 * MQTT and NATS triggers acknowledge a broker message only once the event holding it got
 * there. The dispatcher reports each outcome it records; a waiter registered after the
 * outcome was recorded finds it in the queue.
 *
 * In memory only: after a crash nobody waits any more, the unacknowledged broker messages
 * come again (a duplicate of an event that is still in the queue: at least once).
 */
import type { Queue } from "../queue/types.ts";

/** The terminal outcome of an event. */
export type TerminalOutcome = "succeeded" | "dead-lettered" | "expired";

/** Outcome waiters by event id. */
export class Outcomes {
  private readonly queue: Queue;
  private readonly waiters = new Map<string, ((o: TerminalOutcome) => void)[]>();

  constructor(queue: Queue) {
    this.queue = queue;
  }

  /** Waiters registered now (bounded by the triggers' unacknowledged-message bounds). */
  get size(): number {
    return this.waiters.size;
  }

  /** Resolves when event `id` reaches its terminal outcome. */
  wait(id: string): Promise<TerminalOutcome> {
    const p = new Promise<TerminalOutcome>((resolve) => {
      const list = this.waiters.get(id);
      if (list) list.push(resolve);
      else this.waiters.set(id, [resolve]);
    });
    this.check(id, 0);
    return p;
  }

  /** An outcome recorded before the waiter was registered (a fast function) is in the queue. */
  private check(id: string, tries: number): void {
    this.queue.get(id).then(
      (m) => {
        if (m?.state === "succeeded") this.settled(id, "succeeded");
        else if (m?.state === "dead")
          this.settled(id, m.deadReason === "expired" ? "expired" : "dead-lettered");
      },
      // The queue could not be read: look again (the dispatcher reports later outcomes anyway).
      () => {
        if (tries < 60 && this.waiters.has(id)) setTimeout(() => this.check(id, tries + 1), 1000).unref();
      },
    );
  }

  /** Called by the dispatcher once it recorded event `id`'s terminal outcome. */
  settled(id: string, outcome: TerminalOutcome): void {
    const list = this.waiters.get(id);
    if (!list) return;
    this.waiters.delete(id);
    for (const r of list) r(outcome);
  }

  /** Stops waiting for `id` (its messages were given back to the broker). */
  forget(id: string): void {
    this.waiters.delete(id);
  }
}
