/**
 * The runtime inside every V8 isolate: installs the Web-standard globals a Workers/Deno
 * function expects, then (once the host has wired its bridge in) adapts each invocation to
 * the function's handler shape and sends the response out through the bridge.
 *
 * This file is bundled (with web-streams-polyfill and ../../lambda.ts) into one script that
 * is baked into the isolate host's V8 startup snapshot; it has no access to anything of the
 * host except the few bridge functions handed to `__nimbus_init`.
 */
import {
  ByteLengthQueuingStrategy,
  CountQueuingStrategy,
  ReadableByteStreamController,
  ReadableStream,
  ReadableStreamBYOBReader,
  ReadableStreamBYOBRequest,
  ReadableStreamDefaultController,
  ReadableStreamDefaultReader,
  TransformStream,
  TransformStreamDefaultController,
  WritableStream,
  WritableStreamDefaultController,
  WritableStreamDefaultWriter,
} from "web-streams-polyfill";
import {
  batchFailure,
  parseBatch,
  runQueueBatch,
  toCloudEventRequests,
  toMessageBatch,
  toRecordsEvent,
  toSqsEvent,
} from "../../batch.ts";
import { fromEventPayload, fromLambdaResult, toLambdaEvent } from "../../lambda.ts";
import { inspectModule } from "../../module.ts";
import type { InvokeMeta } from "../../protocol.ts";
import { ProducerClient, type QueueSendMeta, type QueueSentMeta } from "../../queue-send.ts";
import { scheduledController } from "../../scheduled.ts";
import { FLOW_WINDOW, MAX_CHUNK } from "../../window.ts";
import { MAX_TIMERS, timerLimitMessage } from "../limits.ts";
import { structuredClone } from "./clone.ts";
import { CompressionStream, DecompressionStream } from "./compression.ts";
import { atob, btoa, DOMExceptionLike, TextDecoder, TextEncoder, utf8Encode } from "./encoding.ts";
import { AbortController, AbortSignal, CustomEvent, Event, EventTarget, setTimerHooks } from "./events.ts";
import {
  Blob,
  File,
  FormData,
  Headers,
  invocationRequest,
  makeResponse,
  Request,
  Response,
  toU8,
} from "./fetch-api.ts";
import { format } from "./inspect.ts";
import { installNodeHook, nodeModulesUsed } from "./node-hook.ts";
import { CryptoKey, type SubtleCall, SubtleCrypto, setSubtleBridge, subtle } from "./subtle.ts";
import { TextDecoderStream, TextEncoderStream } from "./text-streams.ts";
import { URL, URLSearchParams } from "./url.ts";
import { standInWebHost } from "./web-bridge.ts";

/** Message kinds sent out through `emit` (mirrored in the host). */
export const E = { HEAD: 1, CHUNK: 2, END: 3, ERROR: 4, LOG: 5, DONE: 6, FULL: 7 } as const;

type Emit = (kind: number, id: number, meta?: unknown, bytes?: Uint8Array) => void;
/** The host's side of `emit`: many messages per crossing. */
type RawEmit = (list: [number, number, unknown][], bytes: (Uint8Array | undefined)[]) => void;
interface HostFetchResult {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: Uint8Array;
  /** The body streams in through fetchRead (body is then empty). */
  streamed: boolean;
  url: string;
  redirected: boolean;
}
interface Bridge {
  emit: Emit;
  random: (n: number) => Uint8Array;
  subtle: SubtleCall;
  release: (handle: number) => void;
  timer: (id: number, ms: number, owner: number) => Promise<boolean>;
  untimer: (id: number) => void;
  fetch: (
    fid: number,
    invocation: number,
    req: { url: string; method: string; headers: [string, string][]; redirect: string },
    body: Uint8Array | undefined,
  ) => Promise<HostFetchResult>;
  fetchAbort: (fid: number) => void;
  fetchRead: (fid: number) => Promise<Uint8Array | null>;
  /** Response credit (bytes) the invocation may send now; waits while the caller reads slowly. */
  credit: (id: number) => Promise<number>;
  /** A producer binding's send; resolves with the platform's answer once it is stored. */
  queueSend: (meta: QueueSendMeta, payload: Uint8Array) => Promise<QueueSentMeta>;
}

const g = globalThis as unknown as Record<string, unknown>;
let bridge: Bridge | undefined;
/** The invocation whose code is running synchronously right now (0: none known). */
let current = 0;
const active = new Set<number>();

function logId(): number {
  if (current !== 0) return current;
  if (active.size === 1) return active.values().next().value!;
  return 0;
}

function runAs<T>(id: number, fn: () => T): T {
  const prev = current;
  current = id;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

// ---- console ----
function log(level: "debug" | "info" | "warn" | "error", id = logId()) {
  return (...args: unknown[]): void => {
    bridge?.emit(E.LOG, id === -1 ? logId() : id, { level, t: Date.now(), msg: format(...args) });
  };
}
const counts = new Map<string, number>();
const timers = new Map<string, number>();
const consoleObj = {
  log: log("info", -1),
  info: log("info", -1),
  debug: log("debug", -1),
  trace: log("debug", -1),
  warn: log("warn", -1),
  error: log("error", -1),
  dir: (v: unknown) => log("info", -1)(v),
  table: (v: unknown) => log("info", -1)(v),
  assert: (cond: unknown, ...rest: unknown[]) => {
    if (!cond) log("error", -1)("Assertion failed", ...rest);
  },
  count: (label = "default") => {
    const n = (counts.get(label) ?? 0) + 1;
    counts.set(label, n);
    log("info", -1)(`${label}: ${n}`);
  },
  countReset: (label = "default") => counts.delete(label),
  time: (label = "default") => timers.set(label, Date.now()),
  timeEnd: (label = "default") => {
    const t = timers.get(label);
    timers.delete(label);
    if (t !== undefined) log("info", -1)(`${label}: ${Date.now() - t}ms`);
  },
  timeLog: (label = "default", ...rest: unknown[]) => {
    const t = timers.get(label);
    if (t !== undefined) log("info", -1)(`${label}: ${Date.now() - t}ms`, ...rest);
  },
  group: () => {},
  groupEnd: () => {},
};

function reportError(err: unknown): void {
  log("error", -1)("Uncaught", err);
}

// ---- timers (the host keeps time; the isolate only keeps the callbacks) ----
let nextTimer = 1;
const liveTimers = new Map<number, { fn: () => void; repeat: number; owner: number }>();

function arm(id: number, ms: number, owner: number): void {
  bridge!.timer(id, ms, owner).then(
    (fired) => {
      const t = liveTimers.get(id);
      if (!t) return;
      if (!fired) {
        // Cleared by the host (its invocation ended, or the isolate is going away).
        liveTimers.delete(id);
        return;
      }
      if (t.repeat < 0) liveTimers.delete(id);
      else arm(id, t.repeat, t.owner);
      runAs(t.owner, () => {
        try {
          t.fn();
        } catch (err) {
          reportError(err);
        }
      });
    },
    () => liveTimers.delete(id),
  );
}

function setTimeoutImpl(fn: unknown, ms?: number, ...args: unknown[]): number {
  if (typeof fn !== "function")
    throw new TypeError("setTimeout: the callback must be a function (strings are not evaluated).");
  if (liveTimers.size >= MAX_TIMERS) throw new RangeError(timerLimitMessage());
  const id = nextTimer++;
  const owner = logId();
  liveTimers.set(id, { fn: () => fn(...args), repeat: -1, owner });
  arm(id, Math.max(0, Number(ms) || 0), owner);
  return id;
}
function setIntervalImpl(fn: unknown, ms?: number, ...args: unknown[]): number {
  if (typeof fn !== "function") throw new TypeError("setInterval: the callback must be a function.");
  if (liveTimers.size >= MAX_TIMERS) throw new RangeError(timerLimitMessage());
  const id = nextTimer++;
  const every = Math.max(1, Number(ms) || 0);
  const owner = logId();
  liveTimers.set(id, { fn: () => fn(...args), repeat: every, owner });
  arm(id, every, owner);
  return id;
}
function clearTimer(id: unknown): void {
  const n = Number(id);
  if (liveTimers.delete(n)) bridge?.untimer(n);
}

setTimerHooks((fn, ms) => setTimeoutImpl(fn, ms), reportError);

function queueMicrotaskImpl(fn: () => void): void {
  if (typeof fn !== "function") throw new TypeError("queueMicrotask: the callback must be a function.");
  const owner = logId();
  void Promise.resolve().then(() =>
    runAs(owner, () => {
      try {
        fn();
      } catch (err) {
        reportError(err);
      }
    }),
  );
}

// ---- crypto ----
let pool: Uint8Array = new Uint8Array(0);
let poolOff = 0;
function randomBytes(n: number): Uint8Array {
  if (n > 4096) return bridge!.random(n);
  if (poolOff + n > pool.length) {
    // One crossing to the host buys 4 KiB of randomness.
    pool = bridge!.random(4096);
    poolOff = 0;
  }
  const out = pool.slice(poolOff, poolOff + n);
  poolOff += n;
  return out;
}

function getRandomValues<T extends ArrayBufferView | null>(arr: T): T {
  if (
    !(
      arr instanceof Int8Array ||
      arr instanceof Uint8Array ||
      arr instanceof Uint8ClampedArray ||
      arr instanceof Int16Array ||
      arr instanceof Uint16Array ||
      arr instanceof Int32Array ||
      arr instanceof Uint32Array ||
      arr instanceof BigInt64Array ||
      arr instanceof BigUint64Array
    )
  ) {
    throw new DOMExceptionLike("The data argument must be an integer-type TypedArray.", "TypeMismatchError");
  }
  if (arr.byteLength > 65536) {
    throw new DOMExceptionLike(
      `The ArrayBufferView's byte length (${arr.byteLength}) exceeds the number of bytes of entropy available via this API (65536)`,
      "QuotaExceededError",
    );
  }
  new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).set(randomBytes(arr.byteLength));
  return arr;
}

function randomUUID(): string {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  let h = "";
  for (let i = 0; i < 16; i++) {
    h += b[i]!.toString(16).padStart(2, "0");
    if (i === 3 || i === 5 || i === 7 || i === 9) h += "-";
  }
  return h;
}

// ---- fetch (performed by the host under the network policy and the deadline) ----
let nextFetch = 1;
async function fetchImpl(input: unknown, init?: Record<string, unknown>): Promise<Response> {
  const req = new Request(input as string, init as never);
  if (req.signal.aborted) throw req.signal.reason;
  const url = new URL(req.url);
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new TypeError(`fetch: unsupported URL scheme '${url.protocol}' (only http: and https:).`);
  const body = req._bytes !== undefined || req._stream !== undefined ? await req._consume() : undefined;
  const fid = nextFetch++;
  const owner = logId();
  const pending = bridge!.fetch(
    fid,
    owner,
    { url: req.url, method: req.method, headers: req.headers._pairs(), redirect: req.redirect },
    body,
  );
  // Aborting rejects the pending fetch, or errors a body still streaming in, with the reason.
  let bodyController: ReadableStreamDefaultController<Uint8Array> | undefined;
  let rejectFetch: ((reason: unknown) => void) | undefined;
  const onAbort = (): void => {
    bridge!.fetchAbort(fid);
    rejectFetch?.(req.signal.reason);
    try {
      bodyController?.error(req.signal.reason);
    } catch {
      // Already closed.
    }
  };
  req.signal.addEventListener("abort", onAbort, { once: true });
  const aborted = new Promise<never>((_, reject) => {
    rejectFetch = reject;
  });
  let streaming = false;
  try {
    const r = await Promise.race([pending, aborted]);
    rejectFetch = undefined;
    let body: unknown = r.body.byteLength > 0 ? r.body : null;
    if (r.streamed) {
      streaming = true;
      body = new ReadableStream<Uint8Array>(
        {
          start(c) {
            bodyController = c;
          },
          async pull(c) {
            let chunk: Uint8Array | null;
            try {
              chunk = await bridge!.fetchRead(fid);
            } catch (err) {
              if (req.signal.aborted) return; // errored with the reason already
              throw new TypeError(`fetch body: ${(err as Error).message}`);
            }
            if (chunk === null) {
              c.close();
              req.signal.removeEventListener("abort", onAbort);
            } else c.enqueue(chunk);
          },
          cancel() {
            bridge!.fetchAbort(fid);
            req.signal.removeEventListener("abort", onAbort);
          },
        },
        { highWaterMark: 0 },
      );
    }
    return makeResponse(r.status, r.statusText, r.headers, body, r.url, r.redirected);
  } catch (err) {
    if (err instanceof Error && err.message.includes("NIMBUS_FETCH_LIMIT")) {
      throw new RangeError(err.message);
    }
    if (err instanceof Error && !(err instanceof DOMExceptionLike) && err.name !== "AbortError") {
      throw new TypeError(`fetch failed: ${err.message}`);
    }
    throw err;
  } finally {
    // A streaming body stays abortable through the request's signal until it ends.
    if (!streaming) req.signal.removeEventListener("abort", onAbort);
  }
}

// ---- install the globals ----
const globals: Record<string, unknown> = {
  URL,
  URLSearchParams,
  TextEncoder,
  TextDecoder,
  TextEncoderStream,
  TextDecoderStream,
  atob,
  btoa,
  Headers,
  Request,
  Response,
  Blob,
  File,
  FormData,
  CompressionStream,
  DecompressionStream,
  Event,
  CustomEvent,
  EventTarget,
  AbortController,
  AbortSignal,
  DOMException: DOMExceptionLike,
  structuredClone,
  ReadableStream,
  ReadableStreamDefaultReader,
  ReadableStreamBYOBReader,
  ReadableStreamBYOBRequest,
  ReadableStreamDefaultController,
  ReadableByteStreamController,
  WritableStream,
  WritableStreamDefaultWriter,
  WritableStreamDefaultController,
  TransformStream,
  TransformStreamDefaultController,
  ByteLengthQueuingStrategy,
  CountQueuingStrategy,
  CryptoKey,
  SubtleCrypto,
  queueMicrotask: queueMicrotaskImpl,
  setTimeout: setTimeoutImpl,
  clearTimeout: clearTimer,
  setInterval: setIntervalImpl,
  clearInterval: clearTimer,
  console: consoleObj,
  crypto: { getRandomValues, randomUUID, subtle },
  fetch: fetchImpl,
  navigator: { userAgent: "Nimbus", hardwareConcurrency: 1, language: "en-US" },
  performance: { now: () => Date.now() - timeOrigin, timeOrigin: 0, mark() {}, measure() {} },
  reportError,
};
let timeOrigin = Date.now();
for (const [k, v] of Object.entries(globals)) {
  Object.defineProperty(g, k, { value: v, writable: true, configurable: true, enumerable: false });
}
g.self = globalThis;

// ---- the function ----
type Shape = "fetch-object" | "fetch-function" | "lambda";
let mod: Record<string, unknown> | undefined;
let shape: Shape | undefined;
/** The function's variables (what `process.env` shows with nodejs compatibility). */
let vars: Record<string, string> = {};
/** What handlers get as `env`: the variables plus producer bindings. */
let env: Record<string, unknown> = {};
// Producer bindings (env.JOBS.send): the host sends a QUEUE_SEND frame; its answer settles them.
const producers = new ProducerClient((meta, payload) => {
  bridge!.queueSend(meta, payload).then(
    (m) => producers.settle(m),
    (err: unknown) =>
      producers.settle({
        req: meta.req,
        ok: false,
        error: {
          code: "NIMBUS_QUEUE_UNAVAILABLE",
          message: err instanceof Error ? err.message : String(err),
        },
      }),
  );
});
let info = { functionName: "", version: 0, memoryMB: 128 };

/** Adopts the function's module namespace; returns the load result as JSON. */
function setModule(ns: Record<string, unknown>): string {
  mod = ns;
  try {
    const info = inspectModule(ns);
    shape = info.shape;
    const node = nodeModulesUsed();
    return JSON.stringify({ ok: true, ...info, ...(node.length > 0 ? { node } : {}) });
  } catch (err) {
    return JSON.stringify({
      ok: false,
      error: { message: (err as Error).message, stack: (err as Error).stack },
    });
  }
}

function fail(id: number, code: "NIMBUS_FUNCTION_ERROR" | "NIMBUS_BAD_RESPONSE", err: unknown): void {
  const message = err instanceof Error ? err.message : format(err);
  const stack = err instanceof Error ? err.stack : undefined;
  if (code === "NIMBUS_FUNCTION_ERROR") log("error", id)(`Invocation failed: ${stack ?? message}`);
  else log("error", id)(`Bad response: ${message}`);
  bridge!.emit(E.ERROR, id, { code, message, stack });
}

/** Response credit left per invocation (flow control; the host hands out more as the caller reads). */
const credits = new Map<number, number>();

/**
 * Sends body bytes against the invocation's credit, waiting for more when it is used up: a
 * slow caller pauses the function, whose stream is then read no faster than it drains.
 */
async function sendBytes(id: number, u: Uint8Array): Promise<void> {
  for (let off = 0; off < u.byteLength; ) {
    let c = credits.get(id) ?? 0;
    if (c <= 0) c = await bridge!.credit(id);
    const n = Math.min(c, MAX_CHUNK, u.byteLength - off);
    bridge!.emit(E.CHUNK, id, undefined, u.subarray(off, off + n));
    credits.set(id, c - n);
    off += n;
  }
}

async function sendResponse(id: number, response: Response, pending: () => boolean): Promise<void> {
  const head = { status: response.status, headers: response.headers._pairs() };
  if (response._stream === undefined) {
    const bytes = response._bytes ?? new Uint8Array(0);
    if (bytes.byteLength <= FLOW_WINDOW) {
      // Bytes that fit the window (the usual case): the whole response in one crossing.
      bridge!.emit(E.FULL, id, { ...head, pending: pending() }, bytes);
      return;
    }
    bridge!.emit(E.HEAD, id, head);
    await sendBytes(id, bytes);
    bridge!.emit(E.END, id, { pending: pending() });
    return;
  }
  bridge!.emit(E.HEAD, id, head);
  const reader = response._stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const u = toU8(value);
      if (u.byteLength > 0) await sendBytes(id, u);
    }
  } catch (err) {
    // The function's stream learns that nobody reads it any more.
    reader.cancel(err).catch(() => {});
    throw err;
  }
  bridge!.emit(E.END, id, { pending: pending() });
}

async function invoke(id: number, meta: InvokeMeta, body: Uint8Array): Promise<void> {
  active.add(id);
  const background: Promise<unknown>[] = [];
  try {
    if (shape === "lambda") {
      const event =
        meta.kind === "event" || meta.kind === "scheduled"
          ? fromEventPayload(body)
          : meta.kind === "queue"
            ? queueEvent(parseBatch(body))
            : toLambdaEvent({
                invocationId: meta.invocationId,
                method: meta.method,
                url: meta.url,
                headers: meta.headers,
                body,
                sourceIp: meta.sourceIp,
                functionName: info.functionName,
                time: Date.now(),
              });
      const context = {
        awsRequestId: meta.invocationId,
        functionName: info.functionName,
        functionVersion: String(info.version),
        invokedFunctionArn: `arn:nimbus:lambda:local:nimbus:function:${info.functionName}`,
        memoryLimitInMB: String(info.memoryMB),
        logGroupName: `/nimbus/${info.functionName}`,
        logStreamName: `${info.functionName}/${info.version}/isolate`,
        callbackWaitsForEmptyEventLoop: true,
        getRemainingTimeInMillis: () => Math.max(0, meta.deadline - Date.now()),
        // W3C trace context of this invocation (tracing on), for the function's own calls.
        traceparent: meta.traceparent,
      };
      const fn = mod!.handler as (...a: unknown[]) => unknown;
      let result: unknown;
      try {
        if (fn.length >= 3) {
          result = await new Promise((resolve, reject) => {
            const r = runAs(id, () =>
              fn(event, context, (err: unknown, value: unknown) => (err ? reject(err) : resolve(value))),
            );
            if (r && typeof (r as Promise<unknown>).then === "function")
              (r as Promise<unknown>).then(resolve, reject);
          });
        } else result = await runAs(id, () => fn(event, context));
      } catch (err) {
        fail(id, "NIMBUS_FUNCTION_ERROR", err);
        return;
      }
      let adapted: ReturnType<typeof fromLambdaResult>;
      try {
        adapted = fromLambdaResult(result);
      } catch (err) {
        fail(id, "NIMBUS_BAD_RESPONSE", err);
        return;
      }
      const head = { status: adapted.status, headers: adapted.headers };
      if (adapted.body.byteLength <= FLOW_WINDOW) {
        bridge!.emit(E.FULL, id, { ...head, pending: false }, adapted.body);
        return;
      }
      bridge!.emit(E.HEAD, id, head);
      try {
        await sendBytes(id, adapted.body);
      } catch (err) {
        fail(id, "NIMBUS_FUNCTION_ERROR", err);
        return;
      }
      bridge!.emit(E.END, id, { pending: false });
      return;
    }
    let response: unknown;
    try {
      const request = invocationRequest(meta.url, meta.method, meta.headers, body);
      const ctx = {
        waitUntil(p: Promise<unknown>) {
          background.push(
            Promise.resolve(p).catch((err) => log("error", id)("waitUntil promise rejected:", err)),
          );
        },
        passThroughOnException() {},
        traceparent: meta.traceparent,
      };
      const def = mod!.default as { fetch: (...a: unknown[]) => unknown } & ((...a: unknown[]) => unknown);
      const scheduled = (mod!.default as { scheduled?: (...a: unknown[]) => unknown }).scheduled;
      if (meta.kind === "scheduled" && shape === "fetch-object" && typeof scheduled === "function") {
        // Workers' cron entry point: scheduled(controller, env, ctx); it answers nothing.
        const controller = scheduledController(body, meta.headers);
        await runAs(id, () => scheduled.call(def, controller, env, ctx));
        response = new Response(null, { status: 204 });
      } else if (meta.kind === "queue") {
        // A trigger batch (see ../../batch.ts): queue(batch), else a CloudEvent POST per message.
        const w = parseBatch(body);
        const q = (mod!.default as { queue?: (...a: unknown[]) => unknown }).queue;
        if (w.perMessage) {
          // A named queue: each message has its own outcome (acked ones are not redelivered).
          const r = await runQueueBatch(
            w,
            meta.url,
            shape === "fetch-object" && typeof q === "function"
              ? (b) => runAs(id, () => q.call(def, b, env, ctx))
              : undefined,
            (req: Request) =>
              runAs(id, () => (shape === "fetch-object" ? def.fetch(req, env, ctx) : def(req, env, ctx))),
            (u, i) => new Request(u, i as never),
            (msg) => log("error", id)(msg),
          );
          response = new Response(r.body, {
            status: r.status,
            headers: { "content-type": "application/json" },
          });
        } else if (shape === "fetch-object" && typeof q === "function") {
          const { batch, outcome } = toMessageBatch(w);
          await runAs(id, () => q.call(def, batch, env, ctx));
          const { retried } = outcome();
          if (retried.length > 0) throw batchFailure(retried, w.messages.length);
        } else {
          const make = (u: string, i: object) => new Request(u, i as never);
          for (const r of toCloudEventRequests(w, meta.url, make)) {
            const res = await runAs(id, () =>
              shape === "fetch-object" ? def.fetch(r, env, ctx) : def(r, env, ctx),
            );
            if (!(res instanceof Response)) throw new TypeError("The fetch handler must return a Response.");
            if (res.status >= 500) throw new Error(`fetch answered ${res.status} to a message.`);
          }
        }
        response ??= new Response(null, { status: 204 });
      } else
        response = await runAs(id, () =>
          shape === "fetch-object" ? def.fetch(request, env, ctx) : def(request, env, ctx),
        );
    } catch (err) {
      fail(id, "NIMBUS_FUNCTION_ERROR", err);
      return;
    }
    if (!(response instanceof Response)) {
      fail(
        id,
        "NIMBUS_BAD_RESPONSE",
        new TypeError(
          `The fetch handler must return a Response (or a Promise of one), got ${response === null ? "null" : typeof response}.`,
        ),
      );
      return;
    }
    try {
      await sendResponse(id, response, () => background.length > 0);
    } catch (err) {
      fail(id, "NIMBUS_FUNCTION_ERROR", err);
      return;
    }
    if (background.length > 0) {
      await Promise.allSettled(background);
      bridge!.emit(E.DONE, id);
    }
  } finally {
    active.delete(id);
    credits.delete(id);
  }
}

/**
 * Called once by the host after the context is created: takes the bridge, the function's
 * environment and identity, and returns the two entry points the host calls.
 */
// ---- output to the host, batched: one crossing carries every message of a burst ----
let rawEmit: RawEmit = () => {};
let outList: [number, number, unknown][] = [];
let outBytes: (Uint8Array | undefined)[] = [];
let flushing = false;
let seen = 0;
let spins = 0;

function flushOut(): void {
  if (outList.length === 0) return;
  const list = outList;
  const bytes = outBytes;
  outList = [];
  outBytes = [];
  rawEmit(list, bytes);
}

/**
 * Waits while other microtasks keep adding output (the other responses of one batch of
 * invocations), then crosses once. Bounded, so a stream that enqueues in a microtask loop
 * still goes out in pieces.
 */
function settle(): void {
  if (outList.length !== seen && spins++ < 16) {
    seen = outList.length;
    void Promise.resolve().then(settle);
    return;
  }
  flushing = false;
  flushOut();
}

function queueOut(kind: number, id: number, meta?: unknown, bytes?: Uint8Array): void {
  outList.push([kind, id, meta]);
  outBytes.push(bytes);
  // A log line goes out at once (with what is queued before it): if the function then
  // loops forever, the line is still there to explain it.
  if (kind === E.LOG) {
    flushOut();
    return;
  }
  if (!flushing) {
    flushing = true;
    seen = -1;
    spins = 0;
    void Promise.resolve().then(settle);
  }
}

/** Starts a batch of invocations (one crossing from the host): JSON [[id, meta], …] and bodies. */
function invokeBatch(json: string, bodies: Uint8Array[]): void {
  const items = JSON.parse(json) as [number, InvokeMeta][];
  for (let i = 0; i < items.length; i++) {
    const [id, meta] = items[i]!;
    void invoke(id, meta, bodies[i] ?? new Uint8Array(0));
  }
}

function init(b: Bridge): {
  setModule: typeof setModule;
  invoke: typeof invokeBatch;
  configure: typeof configure;
} {
  bridge = b;
  setSubtleBridge(b.subtle, b.release);
  installNodeHook(() => vars);
  // Shared memory would give a function a high-resolution timer (Spectre); Workers drops it
  // too. Removed here, not in the snapshot: V8 re-adds these while it boots a context.
  delete g.SharedArrayBuffer;
  delete g.Atomics;
  return { setModule, invoke: invokeBatch, configure };
}

/** The Lambda event of a batch: SQS's shape for a named queue, `Records` of a trigger otherwise. */
function queueEvent(w: ReturnType<typeof parseBatch>): unknown {
  return w.perMessage ? toSqsEvent(w) : toRecordsEvent(w);
}

/** Sets the function's environment and identity (when a function is loaded into this isolate). */
function configure(functionEnv: Record<string, string>, functionInfo: typeof info, queues?: string[]): void {
  vars = functionEnv;
  env = { ...functionEnv };
  for (const b of queues ?? []) env[b] = producers.binding(b);
  info = functionInfo;
  timeOrigin = Date.now();
}

/**
 * Runs one request of each handler shape through the runtime with a no-op bridge, so that
 * the snapshot carries compiled code for the whole hot path (the host passes this as the
 * snapshot's warm-up script; V8 keeps the code and discards the state).
 */
function warmUp(): void {
  const saved = { bridge, mod, shape, rawEmit };
  const noop = () => {};
  bridge = {
    emit: queueOut,
    random: (n: number) => new Uint8Array(n),
    subtle: async () => ({ ok: true, value: new Uint8Array(32) }),
    release: noop,
    timer: async () => true,
    untimer: noop,
    fetch: async () => {
      throw new Error("warm-up");
    },
    fetchAbort: noop,
    fetchRead: async () => null,
    credit: async () => FLOW_WINDOW,
    queueSend: async (m) => ({ req: m.req, ok: true }),
  };
  rawEmit = noop;
  // The warm-up's one URL, as the host's parser gives it.
  const warmUrl = "http://localhost/warm/path?x=1&y=two";
  standInWebHost((op) =>
    op === 1
      ? [
          warmUrl,
          "http:",
          "",
          "",
          "localhost",
          "localhost",
          "",
          "/warm/path",
          "?x=1&y=two",
          "",
          "http://localhost",
        ]
      : null,
  );
  const meta = {
    invocationId: "warm",
    method: "POST",
    url: "http://localhost/warm/path?x=1&y=two",
    headers: [
      ["content-type", "application/json"],
      ["user-agent", "warm"],
    ],
    deadline: Date.now() + 1000,
    sourceIp: "127.0.0.1",
  };
  const body = utf8Encode('{"a":1}');
  const handlers: [Shape, Record<string, unknown>][] = [
    [
      "fetch-object",
      {
        default: {
          async fetch(req: Request) {
            const u = new URL(req.url);
            console.log("warm", u.pathname, u.searchParams.get("x"), { a: [1] });
            return Response.json(
              { a: await req.json(), h: req.headers.get("user-agent") },
              { headers: { "x-a": "1" } },
            );
          },
        },
      },
    ],
    ["fetch-function", { default: async () => new Response("warm", { status: 201 }) }],
    ["lambda", { handler: async (event: { rawPath: string }) => ({ statusCode: 200, body: event.rawPath }) }],
  ];
  let id = 0;
  for (const [sh, ns] of handlers) {
    mod = ns;
    shape = sh;
    invokeBatch(JSON.stringify([[++id, meta]]), [body]);
  }
  new Headers([["a", "b"]]).forEach(noop);
  new TextDecoder().decode(utf8Encode("héllo"));
  void new ReadableStream({
    start(c) {
      c.enqueue(new Uint8Array(1));
      c.close();
    },
  })
    .getReader()
    .read();
  // The invocations end in later microtasks: the warm bridge stays until they have. Taken
  // away at once, each would fail on the missing bridge and format its error's stack, whose
  // line:column numbers collide in V8's number-to-string cache; V8 then grows that cache to
  // its full size (256 KiB), which the snapshot would hand to every isolate.
  let spinsLeft = 1000;
  const restore = (): void => {
    if (active.size > 0 && spinsLeft-- > 0) {
      void Promise.resolve().then(restore);
      return;
    }
    ({ bridge, mod, shape, rawEmit } = saved);
  };
  restore();
}

Object.defineProperty(g, "__nimbus_warm", { configurable: true, value: warmUp });

/** A host function handed in as an isolated-vm Reference, called with a promised result. */
interface HostRef {
  apply(receiver: undefined, args: unknown[], options: unknown): Promise<unknown>;
}
function viaRef<F extends (...a: never[]) => Promise<unknown>>(ref: HostRef): F {
  return ((...args: unknown[]) =>
    ref.apply(undefined, args, {
      arguments: { copy: true },
      result: { promise: true, copy: true },
    })) as unknown as F;
}

Object.defineProperty(g, "__nimbus_init", {
  configurable: true,
  value(...fns: unknown[]) {
    delete g.__nimbus_init;
    delete g.__nimbus_warm;
    const [
      emit,
      random,
      subtleRef,
      release,
      timer,
      untimer,
      fetch,
      fetchAbort,
      fetchRead,
      credit,
      queueSend,
    ] = fns as [
      Emit,
      Bridge["random"],
      HostRef,
      Bridge["release"],
      HostRef,
      Bridge["untimer"],
      HostRef,
      Bridge["fetchAbort"],
      HostRef,
      HostRef,
      HostRef,
    ];
    rawEmit = emit as unknown as RawEmit;
    return init({
      emit: queueOut,
      random,
      subtle: viaRef(subtleRef),
      release,
      timer: viaRef(timer),
      untimer,
      fetch: viaRef(fetch),
      fetchAbort,
      fetchRead: viaRef(fetchRead),
      credit: viaRef(credit),
      queueSend: viaRef(queueSend),
    });
  },
});
