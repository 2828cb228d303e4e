/**
 * The isolate host: one sandboxed Node process per tenant holding many V8 isolates
 * (isolated-vm), one per function instance. It talks to the platform over fd 3 with the
 * shared frame protocol (every frame of one event-loop turn in one write), creates isolates
 * from a startup snapshot of the in-isolate runtime, enforces per-isolate memory and
 * per-invocation CPU limits, and performs `fetch`, timers and crypto for its isolates.
 *
 * Usage: node --no-node-snapshot host.ts <isolated-vm native addon> [<undici entry>]
 * Imports nothing from the platform.
 */
import { randomFillSync } from "node:crypto";
import { createRequire } from "node:module";
import { isIP, connect as netConnect, Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { egressOpen } from "../egress-client.ts";
import { Egress } from "../egress-policy.ts";
import {
  CANCELLED_MESSAGE,
  type CreditMeta,
  FLOW_WINDOW,
  type Frame,
  FrameDecoder,
  FrameWriter,
  type InvokeMeta,
  type LogMeta,
  T,
} from "../protocol.ts";
import { QUEUE_LIMITS, type QueueSendMeta, type QueueSentMeta } from "../queue-send.ts";
import { KeyTable, subtleCall } from "./crypto-bridge.ts";
import {
  type FetchSpanMeta,
  type GoneMeta,
  type InitMeta,
  type IsolateLoadMeta,
  TI,
  type UnloadMeta,
} from "./frames.ts";
import {
  fetchBodyLimitMessage,
  fetchLimitMessage,
  MAX_FETCH_BODY_BYTES,
  MAX_FETCHES,
  MAX_TIMERS,
  timerLimitMessage,
} from "./limits.ts";
import { SourceMap } from "./sourcemap.ts";
import { webOp } from "./web-host.ts";

type Ivm = any;
const require = createRequire(import.meta.url);
const ivm: Ivm = require(process.argv[2]!).ivm;
const undiciPath = process.argv[3];
/**
 * The egress proxy's control socket: the host's network namespace has only its own
 * loopback, so every fetch connection is asked of the platform, which checks it against the
 * server's policy (the ceiling) and the function's own policy sent along.
 */
const egressCtl = process.argv[4];

const socket = new Socket({ fd: 3, readable: true, writable: true });
const writer = new FrameWriter(socket);
const decoder = new FrameDecoder();

/** Kinds of messages an isolate emits (mirrors E in prelude/index.ts). */
const E = { HEAD: 1, CHUNK: 2, END: 3, ERROR: 4, LOG: 5, DONE: 6, FULL: 7 } as const;

let snapshot: Ivm;
let egress: Egress;
let spareTarget = 2;
/** Functions one shared isolate holds at most (isolation "context"). */
let contextsPerIsolate = 32;
/** Pre-created blanks per kind: key {@link spareKey}. */
const spares = new Map<string, Promise<Blank>[]>();
/** Spare lists by isolation mode and memory size. */
function spareKey(memoryMB: number, shared: boolean): string {
  return `${shared ? "c" : "i"}${memoryMB}`;
}

interface Invocation {
  slot: Slot;
  /** CPU ms this invocation used: its share of the isolate's CPU while it ran. */
  cpu: number;
  deadline: number;
  /** Waiting for DONE (waitUntil work) after the response ended. */
  background: boolean;
  /** RESP_HEAD went out. */
  headSent: boolean;
  /** Response bytes the platform will still take (flow control: FLOW_WINDOW, then CREDIT frames). */
  credit: number;
  /** Credit handed to the isolate's runtime and not yet spent on body chunks. */
  reserved: number;
  /** The runtime waits for credit. */
  waiter?: { res: (n: number) => void; rej: (e: Error) => void };
  /** The caller went away (CANCEL): no more credit. */
  cancelled: boolean;
  /** Trace id of the invocation's handler span (tracing on): its fetches get client spans. */
  traceId?: string;
}

/**
 * One V8 isolate: its own (isolation "isolate") for one function, or shared (isolation
 * "context") by up to {@link contextsPerIsolate} functions of this tenant with the same memory
 * size, each in its own context created from the runtime snapshot. The isolate is the unit of
 * CPU clock, heap limit and termination: V8 cannot stop one context of a running isolate.
 */
interface Vm {
  iso: Ivm;
  memoryMB: number;
  shared: boolean;
  /** Contexts handed out of it (loaded functions and spare blanks), for capacity and disposal. */
  contexts: number;
  /** Functions loaded in it. */
  slots: Set<Slot>;
  /** Invocations sharing the isolate's CPU clock now (across its functions), and the clock at the last split. */
  running: Set<Invocation>;
  lastCpu: bigint;
  /**
   * CPU ms the isolate used while none of its invocations ran (work left behind after a
   * response): billed to its next invocation, so post-response work is never free.
   */
  unbilledCpu: number;
  gone: boolean;
  /** A function was killed in it (it may still be looping or full): no new contexts go in. */
  draining?: boolean;
}

const vms = new Set<Vm>();
/** Shared isolates taking new contexts, per memory size. */
const sharedVms = new Map<number, Vm[]>();

function newVm(memoryMB: number, shared: boolean): Vm {
  const iso = new ivm.Isolate({ memoryLimit: Math.max(8, memoryMB), snapshot });
  const vm: Vm = {
    iso,
    memoryMB,
    shared,
    contexts: 0,
    slots: new Set(),
    running: new Set(),
    lastCpu: iso.cpuTime,
    unbilledCpu: 0,
    gone: false,
  };
  vms.add(vm);
  if (shared) {
    const list = sharedVms.get(memoryMB) ?? [];
    list.push(vm);
    sharedVms.set(memoryMB, list);
  }
  return vm;
}

/** A shared isolate of this memory size with room for one more context. */
function sharedVm(memoryMB: number): Vm {
  for (const vm of sharedVms.get(memoryMB) ?? []) {
    if (!vm.gone && !vm.draining && vm.contexts < contextsPerIsolate) return vm;
  }
  return newVm(memoryMB, true);
}

/** Disposes an isolate (all its contexts). */
function disposeVm(vm: Vm): void {
  if (vm.gone) return;
  vm.gone = true;
  vms.delete(vm);
  const list = sharedVms.get(vm.memoryMB);
  if (list) {
    const i = list.indexOf(vm);
    if (i >= 0) list.splice(i, 1);
  }
  try {
    if (!vm.iso.isDisposed) vm.iso.dispose();
  } catch {
    // Already gone.
  }
}

interface Slot {
  id: number;
  vm: Vm;
  ctx: Ivm;
  meta: IsolateLoadMeta;
  invoke?: Ivm;
  /** Live timers; `owner` is the invocation that set one (0: none), whose end clears it. */
  timers: Map<number, { h: NodeJS.Timeout; res: (fired: boolean) => void; owner: number }>;
  fetches: Map<number, FetchState>;
  /** Request body bytes of the fetches in flight, together. */
  fetchBodyBytes: number;
  /** Set once the host disposed the isolate on purpose. */
  gone: boolean;
  /** The bundle's source map, for stack traces. */
  map?: SourceMap;
  /** The function's network policy for fetch. */
  egress: Egress;
  /** This function's invocations running now (its share of {@link Vm.running}). */
  running: Set<Invocation>;
  /**
   * Timers that came due while no invocation ran: the isolate is frozen between
   * invocations (as Lambda freezes an idle environment), so they fire when the next
   * invocation arrives.
   */
  held: ((fired: boolean) => void)[];
  /** The isolate's Web Crypto keys (host objects, indexed by the handles it holds). */
  keys?: KeyTable;
}

/** A fetch in flight for an isolate (its body may still be streaming in). */
interface FetchState {
  /** The invocation that started it (its end aborts it). */
  owner: number;
  /** Bytes of its request body held for the upload. */
  bodyBytes: number;
  controller: AbortController;
  /** Aborts the fetch at the invocation's deadline. */
  timer: NodeJS.Timeout;
  reader?: ReadableStreamDefaultReader<Uint8Array>;
  /** Its client span (tracing on), reported to the platform when the fetch ends. */
  span?: FetchSpanMeta;
}

function endFetch(slot: Slot, fid: number, abort = false, error?: string): void {
  const f = slot.fetches.get(fid);
  if (!f) return;
  clearTimeout(f.timer);
  slot.fetches.delete(fid);
  slot.fetchBodyBytes -= f.bodyBytes;
  if (abort) f.controller.abort(new Error("The fetch was aborted."));
  const span = f.span;
  // Only while the invocation runs: the platform's trace of it ends with it.
  if (span && invocations.has(f.owner)) {
    span.endMs = Date.now();
    if (error !== undefined) span.error = error.slice(0, 256);
    else if (abort) span.error = "aborted";
    writer.send(TI.SPAN, f.owner, span);
  }
}

const SPAN_HOST = /^[0-9A-Za-z.:_-]{1,253}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

/** A new random span id (16 hex digits). */
function spanId(): string {
  const b = new Uint8Array(8);
  randomFillSync(b);
  return Buffer.from(b).toString("hex");
}

/**
 * Starts the client span of a fetch the invocation makes (tracing on) and, when the function
 * did not set a `traceparent` of its own, adds one naming that span: a Nimbus function called
 * this way continues the caller's trace under the fetch span.
 */
function fetchSpan(
  inv: Invocation,
  req: { url: string; method: string; headers: [string, string][] },
): FetchSpanMeta | undefined {
  if (!inv.traceId) return undefined;
  let u: URL;
  try {
    u = new URL(req.url);
  } catch {
    return undefined; // undici refuses it just below
  }
  const id = spanId();
  let own = false;
  for (const h of req.headers) if (h[0].toLowerCase() === "traceparent") own = true;
  if (!own) req.headers.push(["traceparent", `00-${inv.traceId}-${id}-01`]);
  // Shaped as the platform's frame check demands (a URL host may hold `!`, `$`, `(`…; a
  // method may be any token): what does not fit is named generically, never sent as is.
  const host = u.hostname.replace(/^\[|\]$/g, "");
  return {
    spanId: id,
    host: SPAN_HOST.test(host) ? host : "_other",
    port: Number(u.port) || (u.protocol === "https:" ? 443 : 80),
    method: /^[A-Za-z]{1,16}$/.test(req.method) ? req.method : "_OTHER",
    scheme: u.protocol === "https:" ? "https" : "http",
    startMs: Date.now(),
    endMs: 0,
    status: 0,
    propagated: !own,
  };
}

const slots = new Map<number, Slot>();
const invocations = new Map<number, Invocation>();

/**
 * Hands the isolate's CPU time since the last look to the invocations running in it, in
 * equal shares: exact when an isolate serves one invocation at a time (the default), a fair
 * split when several overlap (V8 cannot say which of them a microtask belonged to).
 */
function settleCpu(vm: Vm): void {
  let now: bigint;
  try {
    now = vm.iso.cpuTime;
  } catch {
    return; // disposed
  }
  if (vm.running.size > 0) {
    const share = Number(now - vm.lastCpu) / 1e6 / vm.running.size;
    for (const inv of vm.running) inv.cpu += share;
  } else vm.unbilledCpu += Number(now - vm.lastCpu) / 1e6;
  vm.lastCpu = now;
}

function cpuMsOf(inv: Invocation): number {
  settleCpu(inv.slot.vm);
  return inv.cpu;
}

/** An invocation is over (its response, or its waitUntil work, or its failure). */
function forgetInvocation(id: number, inv: Invocation): void {
  settleCpu(inv.slot.vm);
  inv.slot.running.delete(inv);
  inv.slot.vm.running.delete(inv);
  invocations.delete(id);
  releaseInvocation(id, inv);
}

/** Everything an invocation held in the host goes with it: its credit waiter, its timers and fetches. */
function releaseInvocation(id: number, inv: Invocation): void {
  const w = inv.waiter;
  inv.waiter = undefined;
  w?.rej(new Error("The invocation is over; its response can take no more bytes."));
  const slot = inv.slot;
  for (const [tid, t] of slot.timers) {
    if (t.owner !== id) continue;
    clearTimeout(t.h);
    slot.timers.delete(tid);
    t.res(false);
  }
  for (const [fid, f] of slot.fetches) if (f.owner === id) endFetch(slot, fid, true);
}

/**
 * Hands the runtime the response credit it may spend now (all there is), waiting for a
 * CREDIT frame when there is none: this is where a slow caller pauses the function.
 */
function takeCredit(slot: Slot, id: number): Promise<number> {
  const inv = invocations.get(id);
  if (!inv || inv.slot !== slot) return Promise.reject(new Error("The invocation is over."));
  if (inv.cancelled) return Promise.reject(new Error(CANCELLED_MESSAGE));
  if (inv.waiter) return Promise.reject(new Error("Credit is already awaited for this invocation."));
  if (inv.credit > 0) return Promise.resolve(grantCredit(inv));
  return new Promise((res, rej) => {
    inv.waiter = { res, rej };
  });
}

function grantCredit(inv: Invocation): number {
  const n = inv.credit;
  inv.credit = 0;
  inv.reserved += n;
  return n;
}

function onCancel(frame: Frame): void {
  const inv = invocations.get(frame.id);
  if (!inv) return;
  inv.cancelled = true;
  const w = inv.waiter;
  inv.waiter = undefined;
  w?.rej(new Error(CANCELLED_MESSAGE));
}

function onCredit(frame: Frame): void {
  const inv = invocations.get(frame.id);
  const n = (frame.meta as CreditMeta | undefined)?.bytes;
  if (!inv || typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) return;
  inv.credit += n;
  const w = inv.waiter;
  if (!w) return;
  inv.waiter = undefined;
  w.res(grantCredit(inv));
}

/**
 * A blank isolate: runtime (from the snapshot) initialised with its bridge, no function yet.
 * The bridge's callbacks reach the slot through `holder`, set when a function is loaded.
 */
interface Blank {
  vm: Vm;
  ctx: Ivm;
  holder: { slot?: Slot; keys?: KeyTable };
  invoke: Ivm;
  setModule: Ivm;
  configure: Ivm;
}

/** Built-ins that `compatibility: ["nodejs"]` bundles in (src/build/node-compat.ts). */
const NODE_COMPAT = new Set([
  "buffer",
  "events",
  "util",
  "util/types",
  "assert",
  "assert/strict",
  "path",
  "path/posix",
  "string_decoder",
  "async_hooks",
  "process",
]);

const MODULE_SHIM = `const msg = (id) => "require('" + id + "') is not available in the isolate executor: bundle the dependency as an ES module, or set executor: \\"process\\" in the function's config.";
export function createRequire() { return function require(id) { throw new Error(msg(id)); }; }
export default { createRequire };`;

/** A blank: a fresh isolate of its own, or a new context in a shared isolate (`shared`). */
async function newBlank(memoryMB: number, shared: boolean): Promise<Blank> {
  const vm = shared ? sharedVm(memoryMB) : newVm(memoryMB, false);
  vm.contexts++;
  try {
    return await newContext(vm);
  } catch (err) {
    vm.contexts--;
    if (!vm.shared || vm.contexts === 0) disposeVm(vm);
    throw err;
  }
}

async function newContext(vm: Vm): Promise<Blank> {
  const ctx = await vm.iso.createContext();
  const holder: { slot?: Slot; keys?: KeyTable } = {};
  // Everything an isolate sends comes batched: [[kind, id, meta], …] plus the byte payloads.
  const emit = new ivm.Callback(
    (list: [number, number, unknown][], bytes: (Uint8Array | undefined)[]) => {
      const slot = holder.slot;
      if (!slot) return;
      for (let i = 0; i < list.length; i++) {
        const [kind, id, m] = list[i]!;
        onEmit(slot, kind, id, m, bytes[i]);
      }
    },
    { ignored: true },
  );
  const random = new ivm.Callback((n: number) =>
    randomFillSync(new Uint8Array(Math.min(65536, Math.max(0, n | 0)))),
  );
  // Host functions whose answer is a promise go in as References (a Callback cannot return one).
  // Web Crypto: the isolate's keys live in its own table here, cleared when it is disposed.
  const keys = new KeyTable();
  holder.keys = keys;
  const subtle = new ivm.Reference((op: unknown, args: unknown) => handled(subtleCall(keys, op, args)));
  const release = new ivm.Callback((h: unknown) => keys.release(h), { ignored: true });
  const timer = new ivm.Reference(
    (id: number, ms: number, owner: number) =>
      new Promise<boolean>((res, rej) => {
        const slot = holder.slot;
        if (!slot || slot.gone) return res(false);
        if (slot.timers.size >= MAX_TIMERS && !slot.timers.has(id)) {
          return rej(new RangeError(timerLimitMessage()));
        }
        // A timer belongs to the invocation that set it, if that one still runs here.
        const inv = invocations.get(owner);
        const own = inv?.slot === slot ? owner : 0;
        // Node fires delays past 2^31-1 ms at once; hold them to the longest it can wait.
        const delay = Math.min(Math.max(0, Number(ms) || 0), 2 ** 31 - 1);
        const h = setTimeout(() => {
          slot.timers.delete(id);
          // Frozen between invocations: the callback runs when the next one arrives.
          if (slot.running.size === 0 && !slot.gone) slot.held.push(res);
          else res(true);
        }, delay);
        slot.timers.set(id, { h, res, owner: own });
      }),
  );
  const untimer = new ivm.Callback(
    (id: number) => {
      const t = holder.slot?.timers.get(id);
      if (!t) return;
      clearTimeout(t.h);
      holder.slot!.timers.delete(id);
      t.res(false);
    },
    { ignored: true },
  );
  const fetch = new ivm.Reference(
    (fid: number, inv: number, req: Parameters<typeof hostFetch>[3], body: Uint8Array | undefined) =>
      handled(
        holder.slot
          ? hostFetch(holder.slot, fid, inv, req, body)
          : Promise.reject(new Error("no function loaded")),
      ),
  );
  const fetchAbort = new ivm.Callback(
    (fid: number) => {
      if (holder.slot) endFetch(holder.slot, fid, true);
    },
    { ignored: true },
  );
  const readBody = new ivm.Reference((fid: number) =>
    handled(holder.slot ? fetchRead(holder.slot, fid) : Promise.resolve(null)),
  );
  const credit = new ivm.Reference((id: number) =>
    handled(holder.slot ? takeCredit(holder.slot, id) : Promise.reject(new Error("no function loaded"))),
  );
  const queueSend = new ivm.Reference((meta: QueueSendMeta, payload: Uint8Array) =>
    handled(
      holder.slot
        ? hostQueueSend(holder.slot, meta, payload)
        : Promise.reject(new Error("no function loaded")),
    ),
  );
  const api = await ctx.evalClosure(
    "return __nimbus_init($0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    [emit, random, subtle, release, timer, untimer, fetch, fetchAbort, readBody, credit, queueSend],
    { result: { reference: true } },
  );
  // URL parsing and legacy text decoding: one synchronous call into the host's own code.
  await ctx.evalClosure("__nimbus_web_init($0)", [new ivm.Callback(webOp)]);
  return {
    vm,
    ctx,
    holder,
    invoke: api.getSync("invoke", { reference: true }),
    setModule: api.getSync("setModule", { reference: true }),
    configure: api.getSync("configure", { reference: true }),
  };
}

/** A blank of this kind, pre-created when possible (spares in an isolate since stopped are dropped). */
async function takeBlank(memoryMB: number, shared: boolean): Promise<Blank> {
  const key = spareKey(memoryMB, shared);
  const list = spares.get(key) ?? [];
  spares.set(key, list);
  for (let p = list.shift(); p; p = list.shift()) {
    const b = await p.catch(() => undefined);
    if (b && !b.vm.gone && !b.vm.draining) return b;
    if (b) discardBlank(b);
  }
  return newBlank(memoryMB, shared);
}

/** Gives back a spare that will not be used (its isolate stopped or drains). */
function discardBlank(b: Blank): void {
  b.vm.contexts--;
  try {
    b.ctx.release();
  } catch {
    // Already gone.
  }
  if (b.vm.contexts <= 0) disposeVm(b.vm);
}

let refilling = false;
let refillTimer: NodeJS.Timeout | undefined;
/** When the last invocation arrived: refills wait for a quiet moment. */
let lastInvokeAt = 0;

/**
 * Tops the spare lists up, one isolate at a time and only in a quiet moment: creating an
 * isolate holds the main thread for a few milliseconds (deserialising the snapshot), which
 * must not land inside someone's cold start or first request.
 */
function scheduleRefill(delayMs = 20): void {
  if (refillTimer || refilling) return;
  refillTimer = setTimeout(() => {
    refillTimer = undefined;
    if (performance.now() - lastInvokeAt < 10) scheduleRefill(10);
    else refill();
  }, delayMs);
}

/** The isolate of each spare, once made (spares of a stopped shared isolate are dropped). */
const spareVm = new WeakMap<Promise<Blank>, Vm>();

function refill(): void {
  if (refilling) return;
  for (const [key, all] of spares) {
    const list = all.filter((p) => {
      const vm = spareVm.get(p);
      if (vm?.draining && !vm.gone) void p.then(discardBlank, () => {});
      return !vm?.gone && !vm?.draining;
    });
    spares.set(key, list);
    if (list.length >= spareTarget) continue;
    refilling = true;
    const p = newBlank(Number(key.slice(1)), key[0] === "c");
    p.then((b) => spareVm.set(p, b.vm)).catch(() => {});
    list.push(p);
    void p.finally(() => {
      refilling = false;
      scheduleRefill(1);
    });
    return;
  }
}

/**
 * A function's isolate must stop (memory, CPU or runaway limit). In a shared isolate that
 * stops every function in it: V8 can only terminate a whole isolate.
 */
function gone(slot: Slot, meta: GoneMeta): void {
  if (slot.gone) return;
  if (slot.vm.shared) {
    goneVm(slot.vm, slot, meta);
    return;
  }
  dispose(slot);
  writer.send(TI.GONE, slot.id, meta);
}

/**
 * Stops a shared isolate and tells the platform, for each function in it, why: `culprit`
 * gets `meta`; the others learn which neighbour took them down (never silently). Without
 * a culprit (the shared heap ran out: V8 does not say which context allocated), all get `meta`.
 */
function goneVm(vm: Vm, culprit: Slot | undefined, meta: GoneMeta): void {
  const victims = [...vm.slots];
  disposeVm(vm);
  // Its spare contexts went with it.
  scheduleRefill();
  for (const s of victims) {
    if (s.gone) continue;
    dispose(s);
    const own = culprit === undefined || s === culprit;
    writer.send(
      TI.GONE,
      s.id,
      own
        ? meta
        : {
            code: "NIMBUS_INSTANCE_CRASHED",
            message: `The function shared its isolate (isolation "context") with function '${culprit.meta.functionName}', which was stopped (${meta.code}); every function in that isolate was stopped with it and restarts on its next request. Set isolation: "isolate" in the config of a function that must not share this fate.`,
          },
    );
  }
}

/** Time a shared isolate has to answer after one of its functions was killed mid-invocation. */
const PROBE_MS = 500;

/**
 * A function killed while it ran (its timeout) may still hold the shared isolate's thread (an
 * endless loop): V8 cannot stop one context. Ask the isolate for a trivial task; if it cannot
 * run it soon, the isolate is stuck and is stopped with every function in it.
 */
function probeVm(vm: Vm, functionName: string): void {
  if (vm.gone) return;
  let answered = false;
  const done = (): void => {
    answered = true;
  };
  vm.iso.compileScript("0").then(done, done);
  setTimeout(() => {
    if (answered || vm.gone) return;
    goneVm(vm, undefined, {
      code: "NIMBUS_INSTANCE_CRASHED",
      message: `The function shared its isolate (isolation "context") with function '${functionName}', which was stopped at its timeout while still running code; the isolate stayed busy, so every function in it was stopped and restarts on its next request. Set isolation: "isolate" in the config of a function that must not share this fate.`,
    });
  }, PROBE_MS).unref();
}

function dispose(slot: Slot): void {
  slot.gone = true;
  slots.delete(slot.id);
  for (const t of slot.timers.values()) clearTimeout(t.h);
  slot.timers.clear();
  slot.held.length = 0;
  for (const fid of [...slot.fetches.keys()]) endFetch(slot, fid, true);
  for (const [id, inv] of invocations) {
    if (inv.slot !== slot) continue;
    inv.waiter = undefined;
    invocations.delete(id);
  }
  const vm = slot.vm;
  for (const inv of slot.running) vm.running.delete(inv);
  slot.running.clear();
  slot.keys?.clear();
  for (const [k, w] of sendWaits) if (w.slot === slot) sendWaits.delete(k);
  vm.slots.delete(slot);
  vm.contexts--;
  if (!vm.shared || vm.contexts <= 0) {
    disposeVm(vm);
    return;
  }
  try {
    // The context goes; its heap is collected while the isolate serves the others.
    slot.ctx.release();
  } catch {
    // Already gone.
  }
}

/** An isolate failed on its own: tell the platform why. */
function onIsolateError(slot: Slot, err: unknown, id?: number): void {
  if (slot.gone) return;
  const message = err instanceof Error ? err.message : String(err);
  if (slot.vm.iso.isDisposed || /disposed/i.test(message)) {
    const memory = /memory limit/i.test(message) || slot.vm.iso.isDisposed;
    const meta: GoneMeta = {
      code: memory ? "NIMBUS_MEMORY_LIMIT" : "NIMBUS_INSTANCE_CRASHED",
      message: memory
        ? `The function exceeded its memory limit of ${slot.meta.memoryMB} MB and was stopped. Raise 'memory' in its config.`
        : `The function's isolate stopped: ${message}`,
    };
    if (slot.vm.shared) {
      // V8 does not say which context filled the shared heap: every function in it hears why.
      if (memory) {
        meta.message = `The isolate this function shared with ${slot.vm.slots.size - 1} other function(s) of its tenant (isolation "context") exceeded its heap limit of ${slot.vm.memoryMB} MB and was stopped with all of them; they restart on their next request. Raise 'memory', or set isolation: "isolate" to give a function a heap of its own.`;
      }
      goneVm(slot.vm, undefined, meta);
    } else gone(slot, meta);
    return;
  }
  if (id !== undefined) {
    const inv = invocations.get(id);
    if (inv) forgetInvocation(id, inv);
    writer.send(T.INVOKE_ERROR, id, { code: "NIMBUS_FUNCTION_ERROR", message, cpuMs: inv?.cpu ?? 0 });
  }
}

// ---- CPU limit and disposal watch: a light tick while anything runs ----
let watch: NodeJS.Timeout | undefined;
function ensureWatch(): void {
  // Also here, not only on the tick: invocations shorter than a tick never see one, and an
  // isolate looping after its response must still be found while its neighbours are served.
  checkIdleSlots();
  if (watch) return;
  watch = setInterval(() => {
    if (invocations.size === 0) {
      clearInterval(watch);
      watch = undefined;
      return;
    }
    checkIdleSlots();
    // One look at each busy isolate's clock per tick (not one per invocation).
    for (const vm of [...vms]) {
      if (vm.gone || vm.running.size === 0) continue;
      if (vm.iso.isDisposed) {
        const first = vm.running.values().next().value!;
        onIsolateError(first.slot, new Error("disposed due to memory limit"));
        continue;
      }
      settleCpu(vm);
      for (const inv of [...vm.running]) {
        const slot = inv.slot;
        const limit = slot.meta.cpuMs;
        if (slot.gone || limit === undefined || inv.background || inv.cpu <= limit) continue;
        gone(slot, {
          code: "NIMBUS_CPU_LIMIT",
          message: `The function used more than its CPU-time limit of ${limit} ms in one invocation and was stopped. Raise 'cpuMs' in its config, or do less work per request.`,
        });
        if (vm.gone) break;
      }
    }
  }, 5);
}

/**
 * An isolate left running after its invocations ended (a loop started after the response)
 * keeps a thread busy whenever the host is thawed for its neighbours: past its function's
 * timeout of such CPU, it is disposed (its next invocation would have been billed for it).
 */
let lastIdleCheck = 0;
function checkIdleSlots(): void {
  // Every isolate is looked at, so not on every 5 ms tick.
  const now = performance.now();
  if (now - lastIdleCheck < 250) return;
  lastIdleCheck = now;
  for (const vm of [...vms]) {
    if (vm.gone || vm.running.size > 0 || vm.slots.size === 0) continue;
    settleCpu(vm);
    let timeoutMs = 0;
    for (const s of vm.slots) timeoutMs = Math.max(timeoutMs, s.meta.timeoutMs);
    if (vm.unbilledCpu <= timeoutMs) continue;
    const meta: GoneMeta = {
      code: "NIMBUS_CPU_LIMIT",
      message: `The function kept running for ${Math.round(vm.unbilledCpu)} ms of CPU after its invocations ended (more than its timeout of ${timeoutMs} ms) and was stopped. Use ctx.waitUntil for work after the response.`,
    };
    // In a shared isolate the clock is the isolate's: which function kept it busy is unknown.
    if (vm.shared) goneVm(vm, undefined, meta);
    else for (const s of vm.slots) gone(s, meta);
  }
}

// ---- fetch for isolates ----
let undici: any;
/** One connection pool per policy: its connect-time lookup enforces that policy. */
const agents = new WeakMap<Egress, any>();
function agentFor(policy: Egress): any {
  if (!undici) {
    // Without undici's Agent the connect-time check could not be enforced: fail closed.
    if (!undiciPath) throw new Error("fetch is not available in this isolate host");
    undici = require(undiciPath);
  }
  let agent = agents.get(policy);
  if (!agent) {
    agent = new undici.Agent({ connect: proxiedConnector(policy) });
    agents.set(policy, agent);
  }
  return agent;
}

/** An undici connector that opens every connection through the egress proxy. */
function proxiedConnector(policy: Egress) {
  return (
    o: { hostname: string; port: string; protocol: string; servername?: string },
    cb: (err: Error | null, socket: Socket | null) => void,
  ): void => {
    if (!egressCtl) {
      cb(new Error("fetch is not available: the isolate host has no egress proxy"), null);
      return;
    }
    const https = o.protocol === "https:";
    const port = Number(o.port) || (https ? 443 : 80);
    const host = o.hostname.replace(/^\[|\]$/g, "");
    egressOpen(egressCtl, host, port, policy.policy).then(
      (path) => {
        const raw = netConnect({ path });
        if (!https) {
          raw.once("connect", () => cb(null, raw));
          raw.once("error", (e) => cb(e, null));
          return;
        }
        const s = tlsConnect({
          socket: raw,
          servername: o.servername ?? (isIP(host) ? undefined : host),
          ALPNProtocols: ["http/1.1"],
        });
        s.once("secureConnect", () => cb(null, s));
        s.once("error", (e) => cb(e, null));
      },
      (err: Error) => cb(err, null),
    );
  };
}

/** Policies by their JSON, so functions with the same rules share connections. */
const policies = new Map<string, Egress>();
function egressOf(policy: IsolateLoadMeta["egress"]): Egress {
  if (!policy) return egress;
  const key = JSON.stringify(policy);
  let e = policies.get(key);
  if (!e) {
    e = new Egress(policy);
    policies.set(key, e);
  }
  return e;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Fetch bodies up to this size (with a content-length) are passed in whole. */
const INLINE_BODY = 1 << 20;

async function hostFetch(
  slot: Slot,
  fid: number,
  invocation: number,
  req: { url: string; method: string; headers: [string, string][]; redirect: string },
  body: Uint8Array | undefined,
): Promise<unknown> {
  if (slot.fetches.size >= MAX_FETCHES) throw new RangeError(fetchLimitMessage());
  const bodyBytes = body?.byteLength ?? 0;
  if (slot.fetchBodyBytes + bodyBytes > MAX_FETCH_BODY_BYTES) {
    throw new RangeError(fetchBodyLimitMessage(bodyBytes));
  }
  const policy = slot.egress;
  const agent = agentFor(policy);
  const controller = new AbortController();
  const owner = invocations.get(invocation);
  const deadline = owner?.slot === slot ? owner.deadline : Date.now() + slot.meta.timeoutMs;
  const timer = setTimeout(
    () =>
      controller.abort(
        new Error(
          `fetch did not finish before the invocation's deadline (timeout ${slot.meta.timeoutMs} ms)`,
        ),
      ),
    Math.max(0, deadline - Date.now()),
  );
  const state: FetchState = { owner: owner?.slot === slot ? invocation : 0, bodyBytes, controller, timer };
  if (owner?.slot === slot) state.span = fetchSpan(owner, req);
  slot.fetches.set(fid, state);
  slot.fetchBodyBytes += bodyBytes;
  try {
    let url = req.url;
    let method = req.method;
    let payload = body;
    let redirected = false;
    for (let hop = 0; ; hop++) {
      const u = new URL(url);
      const host = u.hostname.replace(/^\[|\]$/g, "");
      // Literal addresses skip DNS, so the connect-time lookup would not see them.
      if (isIP(host)) {
        const why = policy.check(host, host);
        if (why) throw new Error(`fetch to ${u.host} refused: ${why}`);
      }
      const res = await undici.fetch(url, {
        method,
        headers: req.headers,
        body: payload,
        redirect: "manual",
        signal: controller.signal,
        dispatcher: agent,
      });
      if (REDIRECTS.has(res.status) && req.redirect !== "manual" && res.headers.get("location")) {
        if (req.redirect === "error")
          throw new Error(`fetch: redirect to ${res.headers.get("location")} with redirect: "error"`);
        if (hop >= 20) throw new Error("fetch: too many redirects");
        await res.body?.cancel();
        url = new URL(res.headers.get("location")!, url).href;
        if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === "POST")) {
          method = method === "HEAD" ? "HEAD" : "GET";
          payload = undefined;
        }
        redirected = true;
        continue;
      }
      if (state.span) state.span.status = res.status;
      const headers: [string, string][] = [];
      res.headers.forEach((v: string, k: string) => {
        if (k !== "set-cookie") headers.push([k, v]);
      });
      for (const c of res.headers.getSetCookie?.() ?? []) headers.push(["set-cookie", c]);
      const head = { status: res.status, statusText: res.statusText, headers, url, redirected };
      const length = Number(res.headers.get("content-length") ?? Number.NaN);
      if (!res.body || length <= INLINE_BODY) {
        // A body of known, modest size comes in one crossing with the head.
        const bytes = new Uint8Array(await res.arrayBuffer());
        endFetch(slot, fid);
        return { ...head, body: bytes, streamed: false };
      }
      // Anything else (an SSE stream from a model, a large download) is read chunk by chunk
      // as the function reads it.
      state.reader = res.body.getReader();
      return { ...head, body: new Uint8Array(0), streamed: true };
    }
  } catch (err) {
    const message = fetchError(err, controller);
    endFetch(slot, fid, false, message);
    throw new Error(message);
  }
}

function fetchError(err: unknown, controller: AbortController): string {
  const e = err as Error & { cause?: Error };
  return controller.signal.aborted && controller.signal.reason instanceof Error
    ? controller.signal.reason.message
    : (e.cause?.message ?? e.message);
}

/** The next chunk of a streamed fetch body, or null at its end. */
async function fetchRead(slot: Slot, fid: number): Promise<Uint8Array | null> {
  const state = slot.fetches.get(fid);
  if (!state?.reader) return null;
  try {
    const { done, value } = await state.reader.read();
    if (done) {
      endFetch(slot, fid);
      return null;
    }
    return value;
  } catch (err) {
    const message = fetchError(err, state.controller);
    endFetch(slot, fid, false, message);
    throw new Error(message);
  }
}

/**
 * isolated-vm subscribes to a promise a Reference returned only after this turn, so a promise
 * that is already rejected would count as unhandled (and end the process); mark it handled.
 */
// ---- producer bindings: sends go to the platform as QUEUE_SEND frames (id: the slot) ----
/** Sends waiting for QUEUE_SENT, by `<slot>:<req>`. */
const sendWaits = new Map<string, { slot: Slot; resolve: (m: QueueSentMeta) => void }>();

function hostQueueSend(slot: Slot, meta: QueueSendMeta, payload: Uint8Array): Promise<QueueSentMeta> {
  if (slot.gone) return Promise.reject(new Error("The isolate is gone."));
  const key = `${slot.id}:${Number(meta?.req)}`;
  let waiting = 0;
  for (const w of sendWaits.values()) if (w.slot === slot) waiting++;
  if (waiting >= QUEUE_LIMITS.pendingSends || sendWaits.has(key))
    return Promise.reject(
      new RangeError(`${QUEUE_LIMITS.pendingSends} sends are already waiting; await them first.`),
    );
  return new Promise((resolve) => {
    sendWaits.set(key, { slot, resolve });
    writer.send(T.QUEUE_SEND, slot.id, meta, payload);
  });
}

function onQueueSent(frame: Frame): void {
  const m = frame.meta as QueueSentMeta;
  const key = `${frame.id}:${Number(m?.req)}`;
  const w = sendWaits.get(key);
  sendWaits.delete(key);
  w?.resolve(m);
}

function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

// ---- loading a function into a new isolate ----
function errorInfo(err: unknown): { message: string; stack?: string } {
  if (err instanceof Error) return { message: err.message, stack: err.stack };
  return { message: String(err) };
}

/** Bundles up to this size are compiled and linked synchronously into a fresh isolate (see handleLoad). */
const SYNC_COMPILE_BYTES = 512 * 1024;
/** Longest the runtime may take to read a module's exports synchronously, ms. */
const SET_MODULE_TIMEOUT_MS = 2000;

async function handleLoad(frame: Frame): Promise<void> {
  const t0 = performance.now();
  const meta = frame.meta as IsolateLoadMeta;
  let policy: Egress;
  try {
    policy = egressOf(meta.egress);
  } catch (err) {
    writer.send(T.LOADED, frame.id, {
      ok: false,
      error: { message: `The function's network policy is invalid: ${errorInfo(err).message}` },
      loadMs: 0,
    });
    return;
  }
  const blank = await takeBlank(meta.memoryMB, meta.isolation === "context");
  const { vm, ctx } = blank;
  const iso = vm.iso;
  const slot: Slot = {
    id: frame.id,
    vm,
    ctx,
    meta,
    timers: new Map(),
    fetches: new Map(),
    fetchBodyBytes: 0,
    gone: false,
    egress: policy,
    running: new Set(),
    held: [],
    keys: blank.holder.keys,
  };
  slots.set(slot.id, slot);
  vm.slots.add(slot);
  blank.holder.slot = slot;
  try {
    blank.configure.applySync(
      undefined,
      [
        meta.env,
        { functionName: meta.functionName, version: meta.version, memoryMB: meta.memoryMB },
        meta.queues ?? [],
      ],
      { arguments: { copy: true } },
    );
    slot.invoke = blank.invoke;
    const setModule = blank.setModule;
    const mapBytes = meta.mapBytes ?? 0;
    const codeEnd = frame.payload.length - mapBytes;
    const code = frame.payload.toString("utf8", 0, codeEnd);
    if (mapBytes > 0) slot.map = new SourceMap(frame.payload.toString("utf8", codeEnd));
    // Each asynchronous isolated-vm call is a hop to the isolate's thread and back through
    // this event loop (a fraction of a ms, several ms on a loaded machine). A fresh isolate of
    // its own is idle, so compiling a bundle of modest size and linking it are done here in
    // one go; only the module's top level (user code, under its timeout) runs asynchronously.
    // A shared isolate may be busy with a neighbour: it is never waited for on this thread.
    const sync = !vm.shared && codeEnd <= SYNC_COMPILE_BYTES;
    const filename = "file:///fn/index.mjs";
    const mod = sync
      ? iso.compileModuleSync(code, { filename })
      : await iso.compileModule(code, { filename });
    const builtinShim = (specifier: string): Ivm => {
      // Bundles carry `createRequire(import.meta.url)` for CommonJS dependencies; inside an
      // isolate there is nothing to require, and saying so beats failing the whole load.
      if (specifier === "node:module" || specifier === "module")
        return iso.compileModuleSync(MODULE_SHIM, { filename: "nimbus:node-module-shim" });
      const compat = NODE_COMPAT.has(specifier.replace(/^node:/, ""))
        ? ` It is part of the Node compatibility subset: add "compatibility": ["nodejs"] to the function's nimbus.json config and deploy again.`
        : "";
      throw new Error(
        `The function imports '${specifier}', a Node.js built-in (or an unbundled package) that the isolate executor does not provide. Set executor: "process" in its config to use the full Node.js API, or remove the import.${compat}`,
      );
    };
    if (sync) mod.instantiateSync(ctx, builtinShim);
    else await mod.instantiate(ctx, builtinShim);
    await mod.evaluate({ timeout: meta.timeoutMs });
    const ns = [mod.namespace.derefInto()];
    const loaded = JSON.parse(
      sync
        ? // Reads the exports' shape: runtime code, bounded in case an export's getter loops.
          setModule.applySync(undefined, ns, { result: { copy: true }, timeout: SET_MODULE_TIMEOUT_MS })
        : await setModule.apply(undefined, ns, { result: { copy: true } }),
    );
    loaded.loadMs = performance.now() - t0;
    if (loaded.error?.stack && slot.map) loaded.error.stack = slot.map.rewrite(loaded.error.stack);
    if (!loaded.ok) dispose(slot);
    else {
      // Loading (the module's top level) is not billed to the first invocation (in a shared
      // isolate, invocations running meanwhile share the load's CPU: one clock).
      settleCpu(vm);
      vm.unbilledCpu = 0;
    }
    writer.send(T.LOADED, frame.id, loaded);
    scheduleRefill();
  } catch (err) {
    const info = errorInfo(err);
    if (info.stack && slot.map) info.stack = slot.map.rewrite(info.stack);
    if (iso.isDisposed && /memory/i.test(info.message)) {
      info.message = `The function exceeded its memory limit of ${meta.memoryMB} MB while loading. Raise 'memory' in its config.`;
    }
    dispose(slot);
    writer.send(T.LOADED, frame.id, { ok: false, error: info, loadMs: performance.now() - t0 });
    // Its load filled a shared heap: the functions already in that isolate went with it.
    if (vm.shared && iso.isDisposed) {
      goneVm(vm, undefined, {
        code: "NIMBUS_MEMORY_LIMIT",
        message: `Function '${meta.functionName}', loading into the isolate this function shared (isolation "context"), exceeded its heap limit of ${vm.memoryMB} MB; every function in it was stopped and restarts on its next request. Set isolation: "isolate" to give a function a heap of its own.`,
      });
    }
  }
}

/** Source-maps a stack (or log text) and drops the runtime's own frames. */
function userText(slot: Slot, text: string): string {
  const mapped = slot.map ? slot.map.rewrite(text) : text;
  if (!mapped.includes("nimbus:runtime:")) return mapped;
  return mapped
    .split("\n")
    .filter((l) => !/^\s+at (.* \()?nimbus:runtime:\d+:\d+\)?$/.test(l))
    .join("\n");
}

// What an isolate sends is checked like any input from a sandbox: the function can subvert
// the runtime inside its own isolate, but not reach another invocation or send the platform
// malformed frames.
const LEVELS = new Set(["debug", "info", "warn", "error"]);
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const OWN_CODES = new Set(["NIMBUS_FUNCTION_ERROR", "NIMBUS_BAD_RESPONSE"]);

function validHead(m: unknown): { status: number; headers: [string, string][] } | string {
  const { status, headers } = (m ?? {}) as { status?: unknown; headers?: unknown };
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) {
    return `status must be an integer from 200 to 599, got ${String(status)}`;
  }
  if (!Array.isArray(headers) || headers.length > 1000) return "headers must be a list of at most 1000 pairs";
  const out: [string, string][] = [];
  for (const h of headers) {
    if (!Array.isArray(h) || typeof h[0] !== "string" || typeof h[1] !== "string")
      return "each header must be a pair of strings";
    if (!HEADER_NAME.test(h[0]) || /[\r\n\0]/.test(h[1]))
      return `invalid header ${JSON.stringify(h[0]).slice(0, 80)}`;
    out.push([h[0].toLowerCase(), h[1]]);
  }
  return { status, headers: out };
}

function badOutput(inv: Invocation, id: number, why: string): void {
  forgetInvocation(id, inv);
  writer.send(T.INVOKE_ERROR, id, {
    code: "NIMBUS_BAD_RESPONSE",
    message: `The isolate runtime sent an invalid response: ${why}.`,
    cpuMs: inv.cpu,
  });
}

function onEmit(slot: Slot, kind: number, id: number, m: unknown, bytes?: Uint8Array): void {
  if (slot.gone || typeof kind !== "number" || typeof id !== "number") return;
  const inv = invocations.get(id);
  const mine = inv !== undefined && inv.slot === slot;
  if (kind === E.LOG) {
    const raw = (m ?? {}) as { level?: unknown; t?: unknown; msg?: unknown };
    const line: LogMeta = {
      level: LEVELS.has(raw.level as string) ? (raw.level as LogMeta["level"]) : "info",
      t: typeof raw.t === "number" && Number.isFinite(raw.t) ? raw.t : Date.now(),
      msg: userText(slot, typeof raw.msg === "string" ? raw.msg : String(raw.msg)),
    };
    if (mine) writer.send(T.LOG, id, line);
    else writer.send(T.LOG, 0, { ...line, slot: slot.id });
    return;
  }
  if (!mine) return;
  const isBytes = bytes === undefined || bytes instanceof Uint8Array;
  switch (kind) {
    case E.HEAD:
    case E.FULL: {
      if (inv.headSent) {
        badOutput(inv, id, "a second response head");
        return;
      }
      const head = validHead(m);
      if (typeof head === "string") {
        badOutput(inv, id, head);
        return;
      }
      if (!isBytes) {
        badOutput(inv, id, "the body must be bytes");
        return;
      }
      const size = bytes?.byteLength ?? 0;
      if (kind === E.FULL && size > inv.credit) {
        badOutput(inv, id, "a response body larger than its flow-control window");
        return;
      }
      inv.headSent = true;
      writer.send(T.RESP_HEAD, id, head);
      if (kind === E.HEAD) return;
      inv.credit -= size;
      if (bytes && size > 0) writer.send(T.RESP_CHUNK, id, undefined, bytes);
      end(inv, id, Boolean((m as { pending?: unknown }).pending));
      return;
    }
    case E.CHUNK:
      if (!inv.headSent) {
        badOutput(inv, id, "a body chunk before the head");
        return;
      }
      if (!(bytes instanceof Uint8Array)) {
        badOutput(inv, id, "a body chunk must be bytes");
        return;
      }
      if (bytes.byteLength > inv.reserved) {
        badOutput(inv, id, "body bytes beyond the credit it was given (flow control)");
        return;
      }
      inv.reserved -= bytes.byteLength;
      writer.send(T.RESP_CHUNK, id, undefined, bytes);
      return;
    case E.END:
      if (!inv.headSent) {
        badOutput(inv, id, "the end of a response without a head");
        return;
      }
      end(inv, id, Boolean((m as { pending?: unknown } | undefined)?.pending));
      return;
    case E.ERROR: {
      const e = (m ?? {}) as { code?: unknown; message?: unknown; stack?: unknown };
      writer.send(T.INVOKE_ERROR, id, {
        code: OWN_CODES.has(e.code as string) ? e.code : "NIMBUS_FUNCTION_ERROR",
        message: String(e.message ?? "").slice(0, 65536),
        stack: typeof e.stack === "string" ? userText(slot, e.stack) : undefined,
        cpuMs: cpuMsOf(inv),
      });
      forgetInvocation(id, inv);
      return;
    }
    case E.DONE:
      if (!inv.background) return;
      forgetInvocation(id, inv);
      writer.send(T.DONE, id, { cpuMs: inv.cpu });
      return;
  }
}

function end(inv: Invocation, id: number, pending: boolean): void {
  // waitUntil work keeps sharing the isolate's CPU clock until DONE.
  if (pending) inv.background = true;
  else forgetInvocation(id, inv); // settles the clock
  writer.send(T.RESP_END, id, { cpuMs: pending ? cpuMsOf(inv) : inv.cpu, pending });
}

const EMPTY = new Uint8Array(0);
/** Invocations that arrived in this socket read, per isolate: they cross into it together. */
const pendingInvokes = new Map<Slot, { items: [number, InvokeMeta][]; bodies: Uint8Array[] }>();

function handleInvoke(frame: Frame): void {
  lastInvokeAt = performance.now();
  // Passed into the isolate as it came (its extra `slot` field is ignored there): no copy.
  const meta = frame.meta as InvokeMeta & { slot: number };
  const slot = slots.get(meta.slot);
  if (!slot || slot.gone || !slot.invoke) {
    writer.send(T.INVOKE_ERROR, frame.id, {
      code: "NIMBUS_FUNCTION_ERROR",
      message: "The isolate is gone.",
      cpuMs: 0,
    });
    return;
  }
  const inv: Invocation = {
    slot,
    cpu: 0,
    deadline: meta.deadline,
    background: false,
    headSent: false,
    credit: FLOW_WINDOW,
    reserved: 0,
    cancelled: false,
  };
  const tp = typeof meta.traceparent === "string" ? TRACEPARENT.exec(meta.traceparent) : null;
  if (tp) inv.traceId = tp[1];
  invocations.set(frame.id, inv);
  const vm = slot.vm;
  settleCpu(vm);
  // What the isolate ran since its last invocation ended is billed to this one.
  inv.cpu += vm.unbilledCpu;
  vm.unbilledCpu = 0;
  slot.running.add(inv);
  vm.running.add(inv);
  // Thawed: timers that came due while it was frozen fire now.
  if (slot.held.length > 0) for (const res of slot.held.splice(0)) res(true);
  let batch = pendingInvokes.get(slot);
  if (!batch) {
    batch = { items: [], bodies: [] };
    pendingInvokes.set(slot, batch);
  }
  batch.items.push([frame.id, meta]);
  batch.bodies.push(frame.payload.length > 0 ? new Uint8Array(frame.payload) : EMPTY);
}

/** One crossing per isolate for all the invocations of this read. */
function flushInvokes(): void {
  if (pendingInvokes.size === 0) return;
  for (const [slot, batch] of pendingInvokes) {
    if (slot.gone) continue;
    const first = batch.items[0]![0];
    slot
      .invoke!.apply(undefined, [JSON.stringify(batch.items), batch.bodies], { arguments: { copy: true } })
      .catch((err: unknown) => onIsolateError(slot, err, batch.items.length === 1 ? first : undefined));
  }
  pendingInvokes.clear();
  // CPU limits and memory-limit disposals are watched while anything runs.
  ensureWatch();
}

async function handleInit(frame: Frame): Promise<void> {
  const meta = frame.meta as InitMeta;
  egress = new Egress(meta.egress);
  spareTarget = meta.spares;
  if (meta.contextsPerIsolate !== undefined) contextsPerIsolate = meta.contextsPerIsolate;
  spares.set(spareKey(128, meta.isolation === "context"), []);
  // The warm-up runs requests through the runtime so the snapshot holds compiled code for
  // the hot path: a new isolate's first request does not pay for lazy compilation.
  snapshot = ivm.Isolate.createSnapshot(
    [{ code: frame.payload.toString("utf8"), filename: "nimbus:runtime" }],
    "__nimbus_warm()",
  );
  // Warm what every cold start touches (module compile, context from snapshot) once.
  const warm = await newBlank(16, false);
  warm.configure.applySync(undefined, [{}, { functionName: "warm", version: 0, memoryMB: 16 }], {
    arguments: { copy: true },
  });
  const m = await warm.vm.iso.compileModule("export default 1");
  await m.instantiate(warm.ctx, () => {
    throw new Error("no imports");
  });
  await m.evaluate();
  disposeVm(warm.vm);
  writer.send(T.READY, 0, { pid: process.pid });
  refill();
}

socket.on("data", (chunk: Buffer) => {
  for (const frame of decoder.push(chunk)) {
    if (frame.type === T.INVOKE) {
      handleInvoke(frame);
      continue;
    }
    // Keep the order: invocations read before another frame cross before it is handled.
    flushInvokes();
    switch (frame.type) {
      case T.LOAD:
        handleLoad(frame).catch((err: unknown) =>
          writer.send(T.LOADED, frame.id, { ok: false, error: errorInfo(err), loadMs: 0 }),
        );
        break;
      case T.CREDIT:
        onCredit(frame);
        break;
      case T.CANCEL:
        onCancel(frame);
        break;
      case T.QUEUE_SENT:
        onQueueSent(frame);
        break;
      case TI.UNLOAD: {
        const slot = slots.get(frame.id);
        if (!slot) break;
        // Killed mid-invocation in a shared isolate: it may still hold the isolate's thread.
        const stuck = slot.vm.shared && slot.running.size > 0 && (frame.meta as UnloadMeta)?.kill === true;
        if (slot.vm.shared && (frame.meta as UnloadMeta)?.kill === true) slot.vm.draining = true;
        dispose(slot);
        if (stuck) probeVm(slot.vm, slot.meta.functionName);
        break;
      }
      case TI.INIT:
        handleInit(frame).catch((err) => {
          process.stderr.write(`isolate host failed to start: ${errorInfo(err).stack ?? String(err)}\n`);
          process.exit(1);
        });
        break;
    }
  }
  flushInvokes();
});
// One function's failure must not end the host of every function of the tenant.
process.on("unhandledRejection", (reason) => {
  process.stderr.write(`isolate host: unhandled rejection: ${errorInfo(reason).stack ?? String(reason)}\n`);
});
// The platform went away: nothing left to serve.
socket.on("close", () => process.exit(0));
socket.on("error", () => process.exit(0));
