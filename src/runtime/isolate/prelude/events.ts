/**
 * Event, EventTarget, AbortController and AbortSignal for the isolate runtime.
 * `AbortSignal.timeout` needs timers, which the runtime wires in with {@link setTimerHooks}.
 */
import { DOMExceptionLike } from "./encoding.ts";

type Listener = ((e: Event) => void) | { handleEvent(e: Event): void };

/** The DOM Event. */
export class Event {
  static readonly NONE = 0;
  static readonly CAPTURING_PHASE = 1;
  static readonly AT_TARGET = 2;
  static readonly BUBBLING_PHASE = 3;
  readonly type: string;
  readonly bubbles: boolean;
  readonly cancelable: boolean;
  readonly composed: boolean;
  readonly isTrusted = false;
  readonly timeStamp = Date.now();
  defaultPrevented = false;
  eventPhase = 0;
  target: EventTarget | null = null;
  currentTarget: EventTarget | null = null;
  cancelBubble = false;
  /** @internal */
  _stop = false;
  /** @internal Being dispatched now. */
  _dispatching = false;

  constructor(
    type: string,
    init: { bubbles?: boolean; cancelable?: boolean; composed?: boolean } | null = {},
  ) {
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    if (arguments.length === 0) throw new TypeError("Event: 1 argument required (the event type).");
    this.type = String(type);
    this.bubbles = Boolean(init?.bubbles);
    this.cancelable = Boolean(init?.cancelable);
    this.composed = Boolean(init?.composed);
  }
  get srcElement(): EventTarget | null {
    return this.target;
  }
  get returnValue(): boolean {
    return !this.defaultPrevented;
  }
  composedPath(): EventTarget[] {
    return this._dispatching && this.currentTarget ? [this.currentTarget] : [];
  }
  preventDefault(): void {
    if (this.cancelable) this.defaultPrevented = true;
  }
  stopPropagation(): void {
    this.cancelBubble = true;
  }
  stopImmediatePropagation(): void {
    this.cancelBubble = true;
    this._stop = true;
  }
  get [Symbol.toStringTag](): string {
    return "Event";
  }
}

/** The DOM CustomEvent (an Event with a `detail`). */
export class CustomEvent<T = unknown> extends Event {
  readonly detail: T | null;
  constructor(
    type: string,
    init: { bubbles?: boolean; cancelable?: boolean; composed?: boolean; detail?: T } | null = {},
  ) {
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    if (arguments.length === 0) throw new TypeError("CustomEvent: 1 argument required (the event type).");
    super(type, init);
    this.detail = init?.detail ?? null;
  }
  override get [Symbol.toStringTag](): string {
    return "CustomEvent";
  }
}

/** The DOM EventTarget. */
export class EventTarget {
  private readonly listeners = new Map<string, { l: Listener; once: boolean }[]>();

  addEventListener(
    type: string,
    listener: Listener | null,
    options?: boolean | { once?: boolean; signal?: AbortSignal },
  ): void {
    if (!listener) return;
    const list = this.listeners.get(type) ?? [];
    if (list.some((x) => x.l === listener)) return;
    const once = typeof options === "object" && Boolean(options.once);
    list.push({ l: listener, once });
    this.listeners.set(type, list);
    if (typeof options === "object" && options.signal) {
      options.signal.addEventListener("abort", () => this.removeEventListener(type, listener));
    }
  }
  removeEventListener(type: string, listener: Listener | null): void {
    const list = this.listeners.get(type);
    if (!list) return;
    const i = list.findIndex((x) => x.l === listener);
    if (i >= 0) list.splice(i, 1);
  }
  dispatchEvent(event: Event): boolean {
    if (!(event instanceof Event)) throw new TypeError("dispatchEvent: the argument is not an Event.");
    if (event._dispatching)
      throw new DOMExceptionLike(
        `The event "${event.type}" is already being dispatched.`,
        "InvalidStateError",
      );
    event._dispatching = true;
    event.target = this;
    event.currentTarget = this;
    event.eventPhase = 2;
    const handler = (this as unknown as Record<string, unknown>)[`on${event.type}`];
    const list = (this.listeners.get(event.type) ?? []).slice();
    if (typeof handler === "function") list.unshift({ l: handler as Listener, once: false });
    for (const { l, once } of list) {
      if (once) this.removeEventListener(event.type, l);
      try {
        if (typeof l === "function") l.call(this, event);
        else l.handleEvent(event);
      } catch (err) {
        // A throwing listener does not stop the others (reported like an uncaught error).
        reportError(err);
      }
      if (event._stop) break;
    }
    event.currentTarget = null;
    event.eventPhase = 0;
    event._dispatching = false;
    event._stop = false;
    return !event.defaultPrevented;
  }
}

let reportError: (err: unknown) => void = () => {};
let setTimer: (fn: () => void, ms: number) => unknown = () => {
  throw new Error("timers are not ready");
};

/** Wires the runtime's timers and error reporting in (called once at start). */
export function setTimerHooks(timer: typeof setTimer, report: typeof reportError): void {
  setTimer = timer;
  reportError = report;
}

const SIGNAL_KEY = Symbol("signal");

/** The DOM AbortSignal. */
export class AbortSignal extends EventTarget {
  aborted = false;
  reason: unknown = undefined;
  onabort: ((e: Event) => void) | null = null;

  constructor(key?: symbol) {
    super();
    if (key !== SIGNAL_KEY) throw new TypeError("Illegal constructor: use new AbortController().signal.");
  }
  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }
  /** @internal */
  _abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason =
      reason === undefined ? new DOMExceptionLike("This operation was aborted", "AbortError") : reason;
    this.dispatchEvent(new Event("abort"));
  }
  static abort(reason?: unknown): AbortSignal {
    const s = new AbortSignal(SIGNAL_KEY);
    s._abort(reason);
    return s;
  }
  static timeout(ms: number): AbortSignal {
    const s = new AbortSignal(SIGNAL_KEY);
    setTimer(
      () => s._abort(new DOMExceptionLike("The operation was aborted due to timeout", "TimeoutError")),
      ms,
    );
    return s;
  }
  static any(signals: AbortSignal[]): AbortSignal {
    const s = new AbortSignal(SIGNAL_KEY);
    for (const x of signals) {
      if (x.aborted) {
        s._abort(x.reason);
        return s;
      }
    }
    for (const x of signals) x.addEventListener("abort", () => s._abort(x.reason), { once: true });
    return s;
  }
}

/** The DOM AbortController. */
export class AbortController {
  readonly signal = new AbortSignal(SIGNAL_KEY);
  abort(reason?: unknown): void {
    this.signal._abort(reason);
  }
}
