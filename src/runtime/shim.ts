/**
 * The runtime shim: the program inside every process instance. It starts generic (warm,
 * but with no function), waits for a LOAD frame, imports the function's bundle once, then
 * adapts each INVOKE frame to the function's handler shape and streams the response back.
 *
 * Talks to the platform over fd 3 (a socketpair set up by the spawner). Imports nothing
 * from the platform.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { Socket } from "node:net";
import { pathToFileURL } from "node:url";
import { format } from "node:util";
import {
  batchFailure,
  parseBatch,
  runQueueBatch,
  toCloudEventRequests,
  toMessageBatch,
  toRecordsEvent,
  toSqsEvent,
} from "./batch.ts";
import { fromEventPayload, fromLambdaResult, toLambdaEvent } from "./lambda.ts";
import {
  eagerRequest,
  installLazyFetch,
  installLazyRequests,
  lazyRequest,
  webClassesLoaded,
} from "./lazy-request.ts";
import { inspectModule } from "./module.ts";
import { routeThroughEgressProxy } from "./net-patch.ts";
import { ProducerClient, type QueueSentMeta } from "./queue-send.ts";
import {
  CANCELLED_MESSAGE,
  type CreditMeta,
  FLOW_WINDOW,
  type Frame,
  FrameDecoder,
  FrameWriter,
  type HandlerShape,
  type InvokeMeta,
  type LoadMeta,
  type LogMeta,
  MAX_CHUNK,
  T,
} from "./protocol.ts";
import { scheduledController } from "./scheduled.ts";

/**
 * The only way out of the instance's network namespace is the platform's egress proxy; the
 * patch that routes Node's sockets there is installed when a function is loaded, before any
 * of its code runs (at start-up it would load node:tls and crypto on a fresh runtime's
 * critical path; the warm-up of a pre-started runtime loads them ahead).
 */
let egressRouted = false;
function routeEgress(): void {
  if (egressRouted) return;
  egressRouted = true;
  if (process.argv[2]) routeThroughEgressProxy(process.argv[2]);
}

const socket = new Socket({ fd: 3, readable: true, writable: true });
let writer = new FrameWriter(socket);
const decoder = new FrameDecoder();
const current = new AsyncLocalStorage<number>();

let handlerShape: HandlerShape | undefined;
let mod: any;
let load: LoadMeta | undefined;
let envObject: Record<string, unknown> = {};
/** A fetch handler gets lazy requests (see handleLoad for when it cannot). */
let lazyRequests = false;
// Producer bindings: sends go to the platform as QUEUE_SEND frames (stored before they resolve).
const producers = new ProducerClient((meta, payload) =>
  writer.send(T.QUEUE_SEND, current.getStore() ?? 0, meta, payload),
);
/** How long after READY a runtime nobody asked for yet starts warming up, ms. */
const WARM_DELAY_MS = 20;

// ---- console capture: every line is tagged with the invocation that wrote it ----
function capture(level: LogMeta["level"]) {
  return (...args: unknown[]): void => {
    const id = current.getStore() ?? 0;
    writer.send(T.LOG, id, { level, t: Date.now(), msg: format(...args) } satisfies LogMeta);
  };
}
console.log = capture("info");
console.info = capture("info");
console.debug = capture("debug");
console.trace = capture("debug");
console.warn = capture("warn");
console.error = capture("error");

process.on("unhandledRejection", (reason) => {
  const id = current.getStore() ?? 0;
  const msg = reason instanceof Error ? (reason.stack ?? String(reason)) : format(reason);
  writer.send(T.LOG, id, { level: "error", t: Date.now(), msg: `Unhandled rejection: ${msg}` });
});

// ---- response flow control: body bytes go out only against credit from the platform ----
interface Credit {
  bytes: number;
  wake?: () => void;
  /** The caller went away (CANCEL). */
  cancelled?: boolean;
}
const credits = new Map<number, Credit>();

/**
 * Sends body bytes of an invocation, waiting for credit whenever its window is used up: a
 * caller reading slowly pauses the function (its stream is read only as fast as it drains).
 */
async function sendBody(id: number, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.byteLength; ) {
    const c = credits.get(id);
    if (!c) throw new Error("The invocation is over; its response can take no more bytes.");
    if (c.cancelled) throw new Error(CANCELLED_MESSAGE);
    if (c.bytes <= 0) {
      await new Promise<void>((res) => {
        c.wake = res;
      });
      continue;
    }
    const n = Math.min(c.bytes, MAX_CHUNK, bytes.byteLength - off);
    writer.send(T.RESP_CHUNK, id, undefined, bytes.subarray(off, off + n));
    c.bytes -= n;
    off += n;
  }
}

function onCancel(frame: Frame): void {
  const c = credits.get(frame.id);
  if (!c) return;
  c.cancelled = true;
  const wake = c.wake;
  c.wake = undefined;
  wake?.();
}

function onCredit(frame: Frame): void {
  const c = credits.get(frame.id);
  const n = (frame.meta as CreditMeta | undefined)?.bytes;
  if (!c || typeof n !== "number" || !(n > 0)) return;
  c.bytes += n;
  const wake = c.wake;
  c.wake = undefined;
  wake?.();
}

/**
 * The process's CPU time (µs) at its last reading. An invocation's figure starts there,
 * not at a reading of its own: one `getrusage` per invocation instead of two, and what the
 * instance ran while quiet (timers, GC) is billed to the next invocation, as the platform's
 * kernel accounting does with the cgroup's figure.
 */
let lastCpuUs = 0;

function cpuUsNow(): number {
  const u = process.cpuUsage();
  lastCpuUs = u.user + u.system;
  return lastCpuUs;
}

function cpuMsSince(startUs: number): number {
  return Math.max(0, cpuUsNow() - startUs) / 1000;
}

/** What keeps the event loop alive now, counted by kind (Timeout, TCPWrap, FSReqCallback, …). */
function loopResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

/**
 * Settles once the event loop holds nothing beyond `baseline` (what was there before the
 * invocation): Lambda's `callbackWaitsForEmptyEventLoop` for callback-style handlers. The
 * platform bills until then, and stops the instance if it outlives the timeout.
 */
function emptyLoop(baseline: Map<string, number>): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      for (const [kind, n] of loopResources()) {
        if (n > (baseline.get(kind) ?? 0)) {
          setTimeout(check, 10).unref();
          return;
        }
      }
      resolve();
    };
    setTimeout(check, 0).unref();
  });
}

function errorInfo(err: unknown): { message: string; stack?: string } {
  if (err instanceof Error) return { message: err.message, stack: err.stack };
  return { message: format(err) };
}

async function handleLoad(frame: Frame): Promise<void> {
  const start = performance.now();
  load = frame.meta as LoadMeta;
  envObject = { ...load.env };
  // A clean environment holding only the function's own variables.
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, load.env);
  for (const b of load.queues ?? []) envObject[b] = producers.binding(b);
  try {
    routeEgress();
    // `fetch(request)` and `new Request(request)` must take the lazy requests handed to a
    // fetch handler, also where the function's code kept those globals while loading. The
    // Request constructor is wrapped before the import only where undici is loaded already
    // (a warmed runtime): in a fresh one that read costs ~100 ms of CPU, which a Lambda
    // handler never needs. Otherwise after the import, for a fetch handler whose module did
    // not load undici (so it cannot hold the original constructor); one that did gets
    // undici's Request made at once, as before.
    installLazyFetch();
    const early = webClassesLoaded();
    if (early) installLazyRequests();
    mod = await import(pathToFileURL(load.file).href);
    const { shape, config } = inspectModule(mod);
    handlerShape = shape;
    lazyRequests = shape !== "lambda" && (early || !webClassesLoaded());
    if (lazyRequests) installLazyRequests();
    // The first invocation's CPU figure starts here, not with the runtime's start-up.
    cpuUsNow();
    writer.send(T.LOADED, frame.id, {
      ok: true,
      shape: handlerShape,
      config,
      loadMs: performance.now() - start,
    });
  } catch (err) {
    writer.send(T.LOADED, frame.id, { ok: false, error: errorInfo(err), loadMs: performance.now() - start });
  }
}

/** Sends a Response's status, headers and body, chunk by chunk as the body produces them. */
async function sendResponse(id: number, response: Response): Promise<void> {
  const headers: [string, string][] = [];
  // One pass: the Fetch standard's header list gives each set-cookie line on its own
  // (never joined), so no getSetCookie() pass is needed.
  response.headers.forEach((value, name) => {
    headers.push([name, value]);
  });
  writer.send(T.RESP_HEAD, id, { status: response.status, headers });
  if (response.body) {
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value && value.byteLength > 0) {
          await sendBody(id, typeof value === "string" ? Buffer.from(value) : value);
        }
      }
    } catch (err) {
      // The function's stream learns that nobody reads it any more.
      reader.cancel(err).catch(() => {});
      throw err;
    }
  }
}

async function handleInvoke(frame: Frame): Promise<void> {
  const id = frame.id;
  const meta = frame.meta as InvokeMeta;
  const cpuStart = lastCpuUs;
  const background: Promise<unknown>[] = [];
  credits.set(id, { bytes: FLOW_WINDOW });
  const baseline = handlerShape === "lambda" ? loopResources() : undefined;
  await current.run(id, async () => {
    try {
      if (handlerShape === "lambda") {
        const event =
          meta.kind === "event" || meta.kind === "scheduled"
            ? fromEventPayload(frame.payload)
            : meta.kind === "queue"
              ? queueEvent(parseBatch(frame.payload))
              : toLambdaEvent({
                  invocationId: meta.invocationId,
                  method: meta.method,
                  url: meta.url,
                  headers: meta.headers,
                  body: frame.payload,
                  sourceIp: meta.sourceIp,
                  functionName: load!.functionName,
                  time: Date.now(),
                });
        const context = {
          awsRequestId: meta.invocationId,
          functionName: load!.functionName,
          functionVersion: String(load!.version),
          invokedFunctionArn: `arn:nimbus:lambda:local:nimbus:function:${load!.functionName}`,
          memoryLimitInMB: String(load!.memoryMB),
          logGroupName: `/nimbus/${load!.functionName}`,
          logStreamName: `${load!.functionName}/${load!.version}/${process.pid}`,
          callbackWaitsForEmptyEventLoop: true,
          getRemainingTimeInMillis: () => Math.max(0, meta.deadline - Date.now()),
          // W3C trace context of this invocation (tracing on), for the function's own calls.
          traceparent: meta.traceparent,
        };
        const fn = mod.handler as (...a: unknown[]) => unknown;
        let result: unknown;
        if (fn.length >= 3) {
          // Callback-style handler (event, context, callback).
          result = await new Promise((resolve, reject) => {
            const r = fn(event, context, (err: unknown, value: unknown) =>
              err ? reject(err) : resolve(value),
            );
            if (r && typeof (r as Promise<unknown>).then === "function")
              (r as Promise<unknown>).then(resolve, reject);
          });
          // As on Lambda, a callback handler's invocation lasts until the event loop is
          // empty (unless it set callbackWaitsForEmptyEventLoop = false); the response goes
          // out now, the rest is billed like waitUntil work.
          if (context.callbackWaitsForEmptyEventLoop && baseline) background.push(emptyLoop(baseline));
        } else {
          result = await fn(event, context);
        }
        let adapted: ReturnType<typeof fromLambdaResult>;
        try {
          adapted = fromLambdaResult(result);
        } catch (err) {
          return badResponse(id, errorInfo(err).message, cpuStart);
        }
        writer.send(T.RESP_HEAD, id, { status: adapted.status, headers: adapted.headers });
        if (adapted.body.byteLength > 0) await sendBody(id, adapted.body);
      } else {
        const ctx = {
          waitUntil(p: Promise<unknown>) {
            background.push(
              Promise.resolve(p).catch((err) => console.error("waitUntil promise rejected:", err)),
            );
          },
          passThroughOnException() {},
          traceparent: meta.traceparent,
        };
        if (
          meta.kind === "scheduled" &&
          handlerShape === "fetch-object" &&
          typeof mod.default.scheduled === "function"
        ) {
          // Workers' cron entry point: scheduled(controller, env, ctx); it answers nothing.
          await mod.default.scheduled(scheduledController(frame.payload, meta.headers), envObject, ctx);
          writer.send(T.RESP_HEAD, id, { status: 204, headers: [] });
          writer.send(T.RESP_END, id, { cpuMs: cpuMsSince(cpuStart), pending: background.length > 0 });
          return;
        }
        if (meta.kind === "queue") {
          // A trigger batch: queue(batch) when the module has one, else one binary-mode
          // CloudEvent POST per message; a failure (or a retry() asked) fails the batch.
          const w = parseBatch(frame.payload);
          if (w.perMessage) {
            // A named queue: each message has its own outcome (acked ones are not redelivered).
            const q = handlerShape === "fetch-object" ? mod.default.queue : undefined;
            const r = await runQueueBatch(
              w,
              meta.url,
              typeof q === "function" ? (b) => q.call(mod.default, b, envObject, ctx) : undefined,
              (req: Request) =>
                handlerShape === "fetch-object"
                  ? mod.default.fetch(req, envObject, ctx)
                  : mod.default(req, envObject, ctx),
              (u, i) => new Request(u, i as RequestInit),
              (msg) => console.error(msg),
            );
            writer.send(T.RESP_HEAD, id, {
              status: r.status,
              headers: [["content-type", "application/json"]],
            });
            await sendBody(id, Buffer.from(r.body));
            credits.delete(id);
            writer.send(T.RESP_END, id, { cpuMs: cpuMsSince(cpuStart), pending: background.length > 0 });
            return;
          }
          if (handlerShape === "fetch-object" && typeof mod.default.queue === "function") {
            const { batch, outcome } = toMessageBatch(w);
            await mod.default.queue(batch, envObject, ctx);
            const { retried } = outcome();
            if (retried.length > 0) throw batchFailure(retried, w.messages.length);
          } else {
            const make = (u: string, i: object) => new Request(u, i as RequestInit);
            for (const r of toCloudEventRequests(w, meta.url, make)) {
              const res =
                handlerShape === "fetch-object"
                  ? await mod.default.fetch(r, envObject, ctx)
                  : await mod.default(r, envObject, ctx);
              if (!(res instanceof Response))
                throw new TypeError("The fetch handler must return a Response.");
              if (res.status >= 500)
                throw new Error(`fetch answered ${res.status} to message ${r.headers.get("ce-id")}.`);
            }
          }
          writer.send(T.RESP_HEAD, id, { status: 204, headers: [] });
          writer.send(T.RESP_END, id, { cpuMs: cpuMsSince(cpuStart), pending: background.length > 0 });
          return;
        }
        // Made only as far as the function reads it (./lazy-request.ts).
        const request = (lazyRequests ? lazyRequest : eagerRequest)(
          meta.url,
          meta.method,
          meta.headers,
          meta.method !== "GET" && meta.method !== "HEAD" && frame.payload.byteLength > 0
            ? frame.payload
            : undefined,
        );
        const response =
          handlerShape === "fetch-object"
            ? await mod.default.fetch(request, envObject, ctx)
            : await mod.default(request, envObject, ctx);
        if (!(response instanceof Response)) {
          return badResponse(
            id,
            `The fetch handler must return a Response (or a Promise of one), got ${response === null ? "null" : typeof response}.`,
            cpuStart,
          );
        }
        await sendResponse(id, response);
      }
      credits.delete(id);
      writer.send(T.RESP_END, id, { cpuMs: cpuMsSince(cpuStart), pending: background.length > 0 });
    } catch (err) {
      credits.delete(id);
      const info = errorInfo(err);
      console.error(`Invocation failed: ${info.stack ?? info.message}`);
      writer.send(T.INVOKE_ERROR, id, {
        code: "NIMBUS_FUNCTION_ERROR",
        message: info.message,
        stack: info.stack,
        cpuMs: cpuMsSince(cpuStart),
      });
    }
  });
  if (background.length > 0) {
    await Promise.allSettled(background);
    writer.send(T.DONE, id, { cpuMs: cpuMsSince(cpuStart) });
  }
}

/** The Lambda event of a batch: SQS's shape for a named queue, `Records` of a trigger otherwise. */
function queueEvent(w: ReturnType<typeof parseBatch>): unknown {
  return w.perMessage ? toSqsEvent(w) : toRecordsEvent(w);
}

function badResponse(id: number, message: string, cpuStart: number): void {
  credits.delete(id);
  console.error(`Bad response: ${message}`);
  writer.send(T.INVOKE_ERROR, id, { code: "NIMBUS_BAD_RESPONSE", message, cpuMs: cpuMsSince(cpuStart) });
}

function dispatch(frame: Frame): void {
  if (frame.type === T.INVOKE) void handleInvoke(frame);
  else if (frame.type === T.CREDIT) onCredit(frame);
  else if (frame.type === T.CANCEL) onCancel(frame);
  else if (frame.type === T.LOAD) void handleLoad(frame);
  else if (frame.type === T.QUEUE_SENT) producers.settle(frame.meta as QueueSentMeta);
}

// ---- start-up: READY first, the warm-up after it (off a fresh spawn's critical path) ----
/** Frames that arrived while a warm-up step ran (it swaps the globals the handlers use). */
let held: Frame[] | undefined;
/** The platform sent something: the warm-up stops at its next step. */
let wanted = false;

socket.on("data", (chunk: Buffer) => {
  for (const frame of decoder.push(chunk)) {
    wanted = true;
    if (held) held.push(frame);
    else dispatch(frame);
  }
});
// The platform went away: nothing left to serve.
socket.on("close", () => process.exit(0));
socket.on("error", () => process.exit(0));

/**
 * Warms what every invocation touches — the ESM loader, the Web classes (undici's
 * Request/Response are loaded lazily by Node), streams, URL parsing, and synthetic
 * invocations of both handler shapes — so that a function loaded into a pre-started runtime
 * only pays for importing its own bundle. It runs after READY: a runtime spawned for a
 * waiting request gets its LOAD at once and skips it (the first invocation then loads only
 * what it uses, which is less than the whole warm-up); a pre-started one warms while it
 * waits in the pool and says READY again, `{warm: true}`, when done (the platform freezes it
 * only then). Each step checks whether the platform has sent anything, and frames that
 * arrive during a step wait for its end.
 */
async function warmUp(): Promise<void> {
  held = [];
  try {
    const steps: (() => Promise<unknown> | unknown)[] = [
      () => {
        process.getBuiltinModule("node:tls");
        process.getBuiltinModule("node:dns");
      },
      () => import("data:text/javascript,export default 1" as string),
      async () => {
        const req = new Request("http://localhost/warm?x=1", {
          method: "POST",
          headers: { a: "b" },
          body: "x",
        });
        await req.arrayBuffer();
      },
      async () => {
        const res = new Response("warm", { headers: { "content-type": "text/plain" } });
        const reader = res.body!.getReader();
        while (!(await reader.read()).done) {}
        res.headers.getSetCookie();
        Response.json({ a: 1 });
        new URL("http://localhost/a?b=c").searchParams.get("b");
      },
      () =>
        toLambdaEvent({
          invocationId: "warm",
          method: "GET",
          url: "http://localhost/warm?x=1",
          headers: [["content-type", "text/plain"]],
          body: new Uint8Array(1),
          sourceIp: "127.0.0.1",
          functionName: "warm",
          time: Date.now(),
        }),
      () => fromLambdaResult({ statusCode: 200, body: "x" }),
      () => current.run(0, async () => format("%s", "warm")),
      () => warmInvokePath(),
    ];
    for (const step of steps) {
      if (wanted) return;
      await step();
    }
  } finally {
    // Warm (or as warm as it got: a failed step only costs the first invocation time).
    if (!wanted) writer.send(T.READY, 0, { pid: process.pid, warm: true });
    const frames = held;
    held = undefined;
    for (const f of frames) dispatch(f);
  }
}

/**
 * Runs synthetic invocations of both handler shapes through the real invoke path, into a
 * writer that discards, so the first real request after a cold start runs warm code.
 */
async function warmInvokePath(): Promise<void> {
  const real = writer;
  writer = new FrameWriter({ destroyed: false, write: () => true } as unknown as Socket);
  const meta: InvokeMeta = {
    invocationId: "warm",
    method: "POST",
    url: "http://localhost/warm?x=1",
    headers: [["content-type", "application/json"]],
    deadline: Date.now() + 1000,
    sourceIp: "127.0.0.1",
    trigger: "warm",
  };
  load = { file: "", functionName: "warm", version: 0, memoryMB: 128, timeoutMs: 1000, env: {} };
  // undici is loaded by the steps before: the lazy requests' path is warmed too.
  installLazyFetch();
  installLazyRequests();
  lazyRequests = true;
  const warmModules: [HandlerShape, unknown][] = [
    [
      "fetch-object",
      {
        default: {
          async fetch(request: Request) {
            await request.text();
            console.log("warm");
            return new Response("warm", { headers: { "content-type": "text/plain" } });
          },
        },
      },
    ],
    ["lambda", { handler: async () => ({ statusCode: 200, body: "warm" }) }],
  ];
  try {
    for (let i = 0; i < 3 && !wanted; i++) {
      for (const [shape, m] of warmModules) {
        handlerShape = shape;
        mod = m;
        await handleInvoke({ type: T.INVOKE, id: 1, meta, payload: Buffer.from('{"warm":true}') });
      }
    }
    writer.flush();
  } finally {
    handlerShape = undefined;
    mod = undefined;
    load = undefined;
    lazyRequests = false;
    writer = real;
  }
}

writer.send(T.READY, 0, { pid: process.pid, warm: false });
// A short delay: a runtime spawned for a waiting request gets its LOAD within it and never
// warms; a pre-started one warms while it waits.
setTimeout(() => {
  if (!wanted) void warmUp();
}, WARM_DELAY_MS);
