/**
 * Caps on what one isolate may hold in its (tenant-shared) host, known to both the host
 * (which enforces them) and the in-isolate runtime (which throws the RangeError a function
 * sees). Imports nothing.
 */

/**
 * Timers one isolate may have pending (setTimeout/setInterval). Each costs host memory (a
 * Node timer and a promise across the bridge, ~5 KB): 100,000 of them held ~515 MB of the
 * tenant's shared host.
 */
export const MAX_TIMERS = 1000;

/** Fetches one isolate may have in flight (each holds a connection and up to 1 MB of body). */
export const MAX_FETCHES = 32;

/** The message of the RangeError thrown when the timer cap is hit. */
export function timerLimitMessage(): string {
  return `setTimeout/setInterval: this isolate already has ${MAX_TIMERS} timers pending, the limit (NIMBUS_TIMER_LIMIT). Clear timers you no longer need; timers an invocation set are cleared when it ends.`;
}

/** The message of the RangeError thrown when the fetch cap is hit. */
export function fetchLimitMessage(): string {
  return `fetch: this isolate already has ${MAX_FETCHES} requests in flight, the limit (NIMBUS_FETCH_LIMIT). Await some before starting more.`;
}

/**
 * Request body bytes one isolate's fetches in flight may hold in the host together (a body
 * is copied out of the isolate for the upload).
 */
export const MAX_FETCH_BODY_BYTES = 32 * 1024 * 1024;

/** The message of the RangeError thrown when the fetch body cap is hit. */
export function fetchBodyLimitMessage(size: number): string {
  return `fetch: a request body of ${size} bytes would take this isolate's uploads in flight past ${MAX_FETCH_BODY_BYTES} bytes, the limit (NIMBUS_FETCH_LIMIT). Await other uploads first, or send less.`;
}
