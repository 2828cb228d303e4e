/**
 * Invocation deadlines without a timer per request. Every invocation of a pool has the same
 * timeout, so the deadlines added for one duration arrive in the order they expire: one FIFO
 * list per duration, with one timer armed for its oldest entry, holds them all (Node's own
 * timer lists do the same, but a `setTimeout` also allocates a Timeout, an async id and a
 * priority-queue insert per request, and `clearTimeout` unlinks it again). Adding and
 * cancelling is O(1) (a linked list); the timer re-arms only when the oldest entry expires
 * or was cancelled and the timer fired early for it.
 */

/** Something with a deadline: {@link Deadlines.add} links it, `onDeadline` runs when it passes. */
export interface DeadlineEntry {
  onDeadline(): void;
  /** @internal the list links (set by {@link Deadlines}). */
  dlPrev: DeadlineEntry | undefined;
  /** @internal */
  dlNext: DeadlineEntry | undefined;
  /** @internal when it expires (performance.now() ms), or -1 when not linked. */
  dlAt: number;
  /** @internal the list it is linked in. */
  dlList: DeadlineList | undefined;
}

/** One duration's entries, oldest first. */
export class DeadlineList {
  head: DeadlineEntry | undefined;
  tail: DeadlineEntry | undefined;
  timer: NodeJS.Timeout | undefined;
  readonly ms: number;

  constructor(ms: number) {
    this.ms = ms;
  }
}

/** Deadlines, one list per duration. */
export class Deadlines {
  private readonly lists = new Map<number, DeadlineList>();

  /** Runs `e.onDeadline()` once `ms` milliseconds have passed, unless {@link cancel}led first. */
  add(e: DeadlineEntry, ms: number): void {
    if (e.dlList) this.cancel(e);
    let list = this.lists.get(ms);
    if (!list) {
      list = new DeadlineList(ms);
      this.lists.set(ms, list);
    }
    e.dlAt = performance.now() + ms;
    e.dlList = list;
    e.dlNext = undefined;
    e.dlPrev = list.tail;
    if (list.tail) list.tail.dlNext = e;
    else list.head = e;
    list.tail = e;
    if (!list.timer) this.arm(list, e.dlAt);
  }

  /** Forgets a deadline (a no-op when it is not linked). */
  cancel(e: DeadlineEntry): void {
    const list = e.dlList;
    if (!list) return;
    if (e.dlPrev) e.dlPrev.dlNext = e.dlNext;
    else list.head = e.dlNext;
    if (e.dlNext) e.dlNext.dlPrev = e.dlPrev;
    else list.tail = e.dlPrev;
    e.dlPrev = undefined;
    e.dlNext = undefined;
    e.dlList = undefined;
    e.dlAt = -1;
    // The timer stays armed (unref'd): when it fires it finds the new oldest entry and
    // re-arms for it, or nothing and stops. Clearing it here would cost a new timer for every
    // request of a caller that sends one at a time.
  }

  private arm(list: DeadlineList, at: number): void {
    // Unref'd: what keeps the server alive while an invocation runs is its instance channel.
    list.timer = setTimeout(() => this.expire(list), Math.max(1, Math.ceil(at - performance.now())));
    list.timer.unref();
  }

  private expire(list: DeadlineList): void {
    list.timer = undefined;
    const now = performance.now();
    try {
      // Entries expiring within a millisecond go together (the timer's own granularity).
      while (list.head && list.head.dlAt <= now + 1) {
        const e = list.head;
        this.cancel(e);
        e.onDeadline();
      }
    } finally {
      if (list.head) this.arm(list, list.head.dlAt);
      else this.lists.delete(list.ms);
    }
  }
}
