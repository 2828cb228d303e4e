/**
 * The isolate's end of the one synchronous bridge call into the host for Web APIs whose
 * standard behaviour the host already has natively (URL parsing, legacy text encodings): see
 * src/runtime/isolate/web-host.ts. The host hands the function in once per isolate through
 * `__nimbus_web_init`, which removes itself from the global object when called.
 */

/** Operation numbers (mirrors WEB_OP in ../web-host.ts). */
export const WEB_OP = {
  URL_PARSE: 1,
  URL_SET: 2,
  ENC_NAME: 3,
  ENC_TABLE: 4,
  ENC_DECODE: 5,
  LIB_FFLATE: 6,
} as const;

type WebFn = (op: number, a?: unknown, b?: unknown, c?: unknown) => unknown;
let host: WebFn | undefined;

/** Calls the host; throws a TypeError when no host is connected (only while the snapshot is made). */
export function web(op: number, a?: unknown, b?: unknown, c?: unknown): unknown {
  if (!host) throw new TypeError("The Web API bridge is not connected.");
  return host(op, a, b, c);
}

/**
 * Puts in a stand-in host: only for the snapshot's warm-up, which has no host (V8 keeps the
 * warm-up's compiled code and discards its state, so the stand-in does not reach an isolate).
 */
export function standInWebHost(stand: WebFn): void {
  host = stand;
}

Object.defineProperty(globalThis, "__nimbus_web_init", {
  configurable: true,
  value(fn: WebFn) {
    delete (globalThis as Record<string, unknown>).__nimbus_web_init;
    host = fn;
  },
});
