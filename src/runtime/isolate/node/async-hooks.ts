/**
 * `node:async_hooks` for functions that opt into Node compatibility: AsyncLocalStorage and
 * AsyncResource, without V8 promise hooks (an isolate has none to offer).
 *
 * How the context follows the code: the current context is one immutable map (storage →
 * store). `run()` switches it for the synchronous part of a call. Every way code can resume
 * later captures the context when the callback is registered and restores it when the
 * callback runs: `Promise.prototype.then` (and so `catch`, `finally` and every `await` —
 * the bundler lowers `async`/`await` in a function that imports this module into
 * generator steps chained with `.then`, because V8's native `await` resumes without calling
 * `then`), `queueMicrotask`, `setTimeout` and `setInterval`. So the context of a request
 * survives any number of awaits, timers and promise chains inside `run()`, which is what
 * middleware (middy, Hono's context storage, request-scoped loggers) relies on.
 *
 * Limits: code that is not part of the bundle (the platform's own streams and fetch) resumes
 * callbacks in the context that was current when they registered them; `enterWith()` sets
 * the context until the current synchronous run ends.
 */

type Frame = Map<AsyncLocalStorage<unknown>, unknown>;

let current: Frame = new Map();
let patched = false;

function bindTo<F extends (...a: never[]) => unknown>(fn: F, frame: Frame): F {
  return function (this: unknown, ...args: never[]) {
    const prev = current;
    current = frame;
    try {
      return fn.apply(this, args);
    } finally {
      current = prev;
    }
  } as F;
}

/** Makes promise continuations, microtasks and timers carry the context (once per isolate). */
function patch(): void {
  if (patched) return;
  patched = true;
  const g = globalThis as unknown as Record<string, unknown>;
  const then = Promise.prototype.then;
  // biome-ignore lint/suspicious/noThenProperty: replacing Promise.prototype.then is the point.
  Object.defineProperty(Promise.prototype, "then", {
    configurable: true,
    writable: true,
    value: function (this: Promise<unknown>, onFulfilled?: unknown, onRejected?: unknown) {
      const frame = current;
      type Handler = ((value: unknown) => unknown) | null | undefined;
      return then.call(
        this,
        (typeof onFulfilled === "function"
          ? bindTo(onFulfilled as () => unknown, frame)
          : onFulfilled) as Handler,
        (typeof onRejected === "function"
          ? bindTo(onRejected as () => unknown, frame)
          : onRejected) as Handler,
      );
    },
  });
  for (const name of ["setTimeout", "setInterval", "queueMicrotask"]) {
    const original = g[name] as (fn: unknown, ...rest: unknown[]) => unknown;
    if (typeof original !== "function") continue;
    g[name] = (fn: unknown, ...rest: unknown[]) =>
      original(typeof fn === "function" ? bindTo(fn as () => unknown, current) : fn, ...rest);
  }
}

/** Request-scoped storage, as Node's AsyncLocalStorage. */
export class AsyncLocalStorage<T> {
  #enabled = false;

  constructor() {
    patch();
  }

  /** Returns a function that runs `fn` in the context current now. */
  static bind<F extends (...a: never[]) => unknown>(fn: F): F {
    return bindTo(fn, current);
  }

  /** Captures the context current now; the result runs a function inside it. */
  static snapshot(): <R>(fn: (...a: unknown[]) => R, ...args: unknown[]) => R {
    const frame = current;
    return (fn, ...args) => bindTo(fn, frame)(...(args as never[]));
  }

  /** The store of this storage in the current context. */
  getStore(): T | undefined {
    return current.get(this as AsyncLocalStorage<unknown>) as T | undefined;
  }

  /** Runs `fn` with `store` as this storage's store (in everything it starts, too). */
  run<R>(store: T, fn: (...args: unknown[]) => R, ...args: unknown[]): R {
    this.#enabled = true;
    const frame = new Map(current).set(this as AsyncLocalStorage<unknown>, store);
    return bindTo(fn, frame)(...(args as never[]));
  }

  /** Runs `fn` outside this storage's context. */
  exit<R>(fn: (...args: unknown[]) => R, ...args: unknown[]): R {
    const frame = new Map(current);
    frame.delete(this as AsyncLocalStorage<unknown>);
    return bindTo(fn, frame)(...(args as never[]));
  }

  /** Sets the store for the rest of the current synchronous run and what it starts. */
  enterWith(store: T): void {
    this.#enabled = true;
    current = new Map(current).set(this as AsyncLocalStorage<unknown>, store);
  }

  /** Forgets this storage's store in the current context. */
  disable(): void {
    this.#enabled = false;
    if (current.has(this as AsyncLocalStorage<unknown>)) {
      current = new Map(current);
      current.delete(this as AsyncLocalStorage<unknown>);
    }
  }

  /** Whether `run` or `enterWith` was called since the last `disable`. */
  get enabled(): boolean {
    return this.#enabled;
  }
}

/** A context to run callbacks in later, as Node's AsyncResource. */
export class AsyncResource {
  readonly type: string;
  readonly #frame: Frame;
  constructor(type: string) {
    patch();
    this.type = type;
    this.#frame = current;
  }
  /** Runs `fn` in the context captured when the resource was made. */
  runInAsyncScope<R>(fn: (...args: unknown[]) => R, thisArg?: unknown, ...args: unknown[]): R {
    return bindTo(fn, this.#frame).apply(thisArg, args as never[]) as R;
  }
  /** Binds `fn` to the resource's context. */
  bind<F extends (...a: never[]) => unknown>(fn: F): F {
    return bindTo(fn, this.#frame);
  }
  /** Binds `fn` to a new resource's context. */
  static bind<F extends (...a: never[]) => unknown>(fn: F, type = "bound-anonymous-fn"): F {
    return new AsyncResource(type).bind(fn);
  }
  emitDestroy(): this {
    return this;
  }
  asyncId(): number {
    return 0;
  }
  triggerAsyncId(): number {
    return 0;
  }
}

/** Node's low-level hooks do not exist here; createHook returns an inert hook. */
export function createHook(): { enable(): unknown; disable(): unknown } {
  const hook = { enable: () => hook, disable: () => hook };
  return hook;
}
export const executionAsyncId = (): number => 0;
export const triggerAsyncId = (): number => 0;
