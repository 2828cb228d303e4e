/** Node's `setImmediate`/`clearImmediate` globals, on the isolate's timers (injected where named). */

/** Runs `fn` after the current macrotask, as Node's setImmediate. */
export function setImmediate(fn: (...args: unknown[]) => void, ...args: unknown[]): unknown {
  return setTimeout(fn, 0, ...args);
}

/** Cancels a {@link setImmediate}. */
export function clearImmediate(id: unknown): void {
  clearTimeout(id as number);
}
