/**
 * structuredClone for the isolate runtime: the HTML structured-clone algorithm over the
 * types a function can hold (primitives, plain objects, arrays, Date, RegExp, Map, Set,
 * ArrayBuffer and views, Error, boxed primitives), preserving cycles and shared references.
 */
import { ReadableStream, TransformStream, WritableStream } from "web-streams-polyfill";
import { Blob, File } from "./blob.ts";
import { DOMExceptionLike } from "./encoding.ts";
import { AbortController, Event, EventTarget } from "./events.ts";
import { Request, Response } from "./fetch-api.ts";
import { FormData } from "./form-data.ts";
import { Headers } from "./headers.ts";
import { URL, URLSearchParams } from "./url.ts";

/** Platform objects that are not serializable (HTML: they throw DataCloneError). */
const PLATFORM: (abstract new (...a: never[]) => object)[] = [
  URL,
  URLSearchParams,
  Headers,
  FormData,
  Request,
  Response,
  EventTarget,
  Event,
  AbortController,
  ReadableStream,
  WritableStream,
  TransformStream,
];

type Ctor = new (...a: never[]) => ArrayBufferView;

/** The HTML Standard's structuredClone. */
export function structuredClone<T>(value: T, options?: { transfer?: unknown[] }): T {
  // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
  if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required (the value).");
  const memory = new Map<unknown, unknown>();
  const out = clone(value, memory) as T;
  // Transferred buffers are detached in the source, as postMessage would.
  for (const t of options?.transfer ?? []) {
    if (
      t instanceof ArrayBuffer &&
      typeof (t as ArrayBuffer & { transfer?: () => ArrayBuffer }).transfer === "function"
    ) {
      (t as ArrayBuffer & { transfer: () => ArrayBuffer }).transfer();
    }
  }
  return out;
}

function clone(v: unknown, memory: Map<unknown, unknown>): unknown {
  if (v === null || (typeof v !== "object" && typeof v !== "function")) {
    if (typeof v === "symbol")
      throw new DOMExceptionLike(`${String(v)} could not be cloned.`, "DataCloneError");
    return v;
  }
  if (typeof v === "function")
    throw new DOMExceptionLike(`${String(v).slice(0, 60)} could not be cloned.`, "DataCloneError");
  if (memory.has(v)) return memory.get(v);
  const o = v as object;
  if (o instanceof Blob) {
    const copy =
      o instanceof File
        ? new File([o], o.name, { type: o.type, lastModified: o.lastModified })
        : new Blob([o], { type: o.type });
    return remember(memory, o, copy);
  }
  for (const C of PLATFORM) {
    if (o instanceof C) {
      throw new DOMExceptionLike(
        `${Object.prototype.toString.call(o)} could not be cloned.`,
        "DataCloneError",
      );
    }
  }
  if (o instanceof Date) return remember(memory, o, new Date(o.getTime()));
  if (o instanceof RegExp) return remember(memory, o, new RegExp(o.source, o.flags));
  if (o instanceof Boolean || o instanceof Number || o instanceof String)
    return remember(memory, o, Object(o.valueOf()));
  if (o instanceof ArrayBuffer) return remember(memory, o, o.slice(0));
  if (ArrayBuffer.isView(o)) {
    const buf = clone(o.buffer, memory) as ArrayBuffer;
    const C = o.constructor as Ctor & (new (b: ArrayBuffer, off: number, len: number) => ArrayBufferView);
    const len = o instanceof DataView ? o.byteLength : (o as unknown as { length: number }).length;
    return remember(memory, o, new C(buf, o.byteOffset, len));
  }
  if (o instanceof Map) {
    const m = new Map();
    memory.set(o, m);
    for (const [k, val] of o) m.set(clone(k, memory), clone(val, memory));
    return m;
  }
  if (o instanceof Set) {
    const s = new Set();
    memory.set(o, s);
    for (const val of o) s.add(clone(val, memory));
    return s;
  }
  if (o instanceof Error) {
    const E =
      (
        { EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError } as Record<
          string,
          ErrorConstructor
        >
      )[o.name] ?? Error;
    const e = new E(o.message);
    memory.set(o, e);
    if (o.stack !== undefined) e.stack = o.stack;
    if ("cause" in o)
      (e as Error & { cause: unknown }).cause = clone((o as Error & { cause: unknown }).cause, memory);
    return e;
  }
  if (Array.isArray(o)) {
    const a: unknown[] = new Array(o.length);
    memory.set(o, a);
    for (const k of Object.keys(o))
      (a as unknown as Record<string, unknown>)[k] = clone(
        (o as unknown as Record<string, unknown>)[k],
        memory,
      );
    return a;
  }
  const proto = Object.getPrototypeOf(o);
  if (proto !== Object.prototype && proto !== null) {
    const name = proto?.constructor?.name ?? "object";
    if (o instanceof Promise || o instanceof WeakMap || o instanceof WeakSet || name !== "Object") {
      // Class instances clone as plain objects (their own enumerable data), except platform
      // objects that cannot be cloned at all.
      if (o instanceof Promise || o instanceof WeakMap || o instanceof WeakSet) {
        throw new DOMExceptionLike(`#<${name}> could not be cloned.`, "DataCloneError");
      }
    }
  }
  const r: Record<string, unknown> = {};
  memory.set(o, r);
  for (const k of Object.keys(o)) r[k] = clone((o as Record<string, unknown>)[k], memory);
  return r;
}

function remember<T>(memory: Map<unknown, unknown>, from: unknown, to: T): T {
  memory.set(from, to);
  return to;
}
