/**
 * Streams (Streams and Compression Standards), AbortController/AbortSignal and Event/EventTarget
 * (DOM Standard), structuredClone (HTML Standard).
 */
import { arrayEq, eq, ok, readAllChunks, rejects, type Suite, throws } from "../harness.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Registers the Streams subtests. */
export function streamsTests(t: Suite): void {
  t.area = "Streams";
  t.test("ReadableStream enqueue/close/read", async () => {
    const s = new ReadableStream({ start: (c) => (c.enqueue(1), c.enqueue(2), c.close()) });
    arrayEq(await readAllChunks(s), [1, 2]);
  });
  t.test("ReadableStream pull is called on demand with highWaterMark", async () => {
    let pulls = 0;
    const s = new ReadableStream({ pull: (c) => void (pulls++, c.enqueue(pulls)) }, { highWaterMark: 2 });
    await sleep(0);
    eq(pulls, 2);
    await s.getReader().read();
    await sleep(0);
    eq(pulls, 3);
  });
  t.test("ReadableStream locked and getReader twice throws", () => {
    const s = new ReadableStream();
    s.getReader();
    ok(s.locked);
    throws("TypeError", () => s.getReader());
  });
  t.test("ReadableStream cancel reaches the source", async () => {
    let reason: unknown;
    const s = new ReadableStream({
      cancel: (r) => {
        reason = r;
      },
    });
    await s.cancel("why");
    eq(reason, "why");
  });
  t.test("ReadableStream error rejects reads", async () => {
    const s = new ReadableStream({ start: (c) => c.error(new TypeError("x")) });
    await rejects("TypeError", s.getReader().read());
  });
  t.test("ReadableStream tee", async () => {
    const [a, b] = new ReadableStream({ start: (c) => (c.enqueue("x"), c.close()) }).tee();
    arrayEq(await readAllChunks(a), ["x"]);
    arrayEq(await readAllChunks(b), ["x"]);
  });
  t.test("ReadableStream async iteration", async () => {
    const out: number[] = [];
    for await (const x of new ReadableStream<number>({
      start: (c) => (c.enqueue(1), c.enqueue(2), c.close()),
    }))
      out.push(x);
    arrayEq(out, [1, 2]);
  });
  t.test("ReadableStream.from an iterable", async () => {
    const RS = ReadableStream as unknown as { from(x: Iterable<number>): ReadableStream<number> };
    arrayEq(await readAllChunks(RS.from([1, 2, 3])), [1, 2, 3]);
  });
  t.test("ReadableStream byte stream with BYOB reader", async () => {
    const s = new ReadableStream({
      type: "bytes",
      pull(c) {
        const v = c.byobRequest!.view as Uint8Array;
        v[0] = 7;
        c.byobRequest!.respond(1);
        c.close();
      },
    });
    const r = s.getReader({ mode: "byob" });
    const { value } = await r.read(new Uint8Array(4));
    eq(value![0], 7);
  });
  t.test("WritableStream write/close in order", async () => {
    const got: unknown[] = [];
    const w = new WritableStream({ write: (c) => void got.push(c), close: () => void got.push("closed") });
    const writer = w.getWriter();
    await writer.write("a");
    await writer.write("b");
    await writer.close();
    arrayEq(got, ["a", "b", "closed"]);
  });
  t.test("WritableStream backpressure: desiredSize", async () => {
    const w = new WritableStream(
      { write: async () => void (await sleep(5)) },
      new CountQueuingStrategy({ highWaterMark: 2 }),
    );
    const writer = w.getWriter();
    eq(writer.desiredSize, 2);
    void writer.write(1);
    void writer.write(2);
    eq(writer.desiredSize, 0);
    await writer.close();
  });
  t.test("WritableStream abort", async () => {
    let reason: unknown;
    const w = new WritableStream({
      abort: (r) => {
        reason = r;
      },
    });
    await w.abort("r");
    eq(reason, "r");
  });
  t.test("TransformStream transforms and flushes", async () => {
    const ts = new TransformStream<string, string>({
      transform: (c, ctl) => ctl.enqueue(c.toUpperCase()),
      flush: (ctl) => ctl.enqueue("!"),
    });
    const w = ts.writable.getWriter();
    void w.write("a");
    void w.close();
    arrayEq(await readAllChunks(ts.readable), ["A", "!"]);
  });
  t.test("pipeThrough and pipeTo", async () => {
    const got: string[] = [];
    await new ReadableStream<string>({ start: (c) => (c.enqueue("x"), c.close()) })
      .pipeThrough(new TransformStream<string, string>({ transform: (c, ctl) => ctl.enqueue(c + c) }))
      .pipeTo(new WritableStream({ write: (c) => void got.push(c) }));
    arrayEq(got, ["xx"]);
  });
  t.test("pipeTo with an aborted signal rejects with AbortError", async () => {
    const ac = new AbortController();
    ac.abort();
    await rejects("AbortError", new ReadableStream().pipeTo(new WritableStream(), { signal: ac.signal }));
  });
  t.test("ByteLengthQueuingStrategy size", () =>
    eq(new ByteLengthQueuingStrategy({ highWaterMark: 1 }).size(new Uint8Array(3)), 3),
  );
  for (const format of ["gzip", "deflate", "deflate-raw"] as const) {
    t.test(`CompressionStream/DecompressionStream ${format} round trip`, async () => {
      const input = new TextEncoder().encode("hello hello hello hello");
      const compressed = new Blob([input]).stream().pipeThrough(new CompressionStream(format));
      const out = await new Response(compressed.pipeThrough(new DecompressionStream(format))).text();
      eq(out, "hello hello hello hello");
    });
  }
  t.test("CompressionStream with an unknown format throws", () =>
    throws("TypeError", () => new CompressionStream("zip" as CompressionFormat)),
  );
  t.test("DecompressionStream of corrupt data errors", async () => {
    const s = new Blob([new Uint8Array([1, 2, 3, 4])]).stream().pipeThrough(new DecompressionStream("gzip"));
    await rejects("TypeError", new Response(s).arrayBuffer());
  });
  t.test("gzip output starts with the gzip magic", async () => {
    const s = new Blob(["x"]).stream().pipeThrough(new CompressionStream("gzip"));
    const b = new Uint8Array(await new Response(s).arrayBuffer());
    eq(b[0], 0x1f);
    eq(b[1], 0x8b);
  });
}

/** Registers the AbortController/AbortSignal and Event/EventTarget subtests. */
export function eventsTests(t: Suite): void {
  t.area = "AbortSignal";
  t.test("AbortController.abort() sets aborted and an AbortError reason", () => {
    const ac = new AbortController();
    let events = 0;
    ac.signal.addEventListener("abort", () => events++);
    ac.abort();
    ac.abort();
    ok(ac.signal.aborted);
    eq((ac.signal.reason as DOMException).name, "AbortError");
    eq(events, 1);
  });
  t.test("abort(reason) keeps the reason; throwIfAborted throws it", () => {
    const ac = new AbortController();
    ac.abort("why");
    eq(ac.signal.reason, "why");
    try {
      ac.signal.throwIfAborted();
      throw new Error("did not throw");
    } catch (e) {
      eq(e, "why");
    }
  });
  t.test("AbortSignal.abort()", () => {
    const s = AbortSignal.abort();
    ok(s.aborted);
    eq((s.reason as DOMException).name, "AbortError");
  });
  t.test("AbortSignal.timeout fires with a TimeoutError", async () => {
    const s = AbortSignal.timeout(5);
    await new Promise((r) => s.addEventListener("abort", r));
    eq((s.reason as DOMException).name, "TimeoutError");
  });
  t.test("AbortSignal.any follows the first to abort", () => {
    const a = new AbortController();
    const b = new AbortController();
    const s = AbortSignal.any([a.signal, b.signal]);
    b.abort("b");
    eq(s.reason, "b");
    a.abort("a");
    eq(s.reason, "b");
  });
  t.test("AbortSignal.any of an aborted signal is aborted at once", () => {
    eq(AbortSignal.any([AbortSignal.abort("x")]).reason, "x");
  });
  t.test("onabort handler attribute", () => {
    const ac = new AbortController();
    let called = false;
    ac.signal.onabort = () => {
      called = true;
    };
    ac.abort();
    ok(called);
  });
  t.test("new AbortSignal() throws", () =>
    throws("TypeError", () => new (AbortSignal as unknown as new () => AbortSignal)()),
  );

  t.area = "Event/EventTarget";
  t.test("Event constructor and defaults", () => {
    const e = new Event("x");
    eq(e.type, "x");
    eq(e.bubbles, false);
    eq(e.cancelable, false);
    eq(e.defaultPrevented, false);
    eq(e.eventPhase, 0);
    ok(typeof e.timeStamp === "number");
    eq(e.isTrusted, false);
  });
  t.test("Event requires a type", () =>
    throws("TypeError", () => new (Event as unknown as new () => Event)()),
  );
  t.test("preventDefault only when cancelable", () => {
    const e = new Event("x", { cancelable: true });
    e.preventDefault();
    ok(e.defaultPrevented);
    const f = new Event("x");
    f.preventDefault();
    ok(!f.defaultPrevented);
  });
  t.test("dispatchEvent returns !defaultPrevented and sets target", () => {
    const et = new EventTarget();
    let target: unknown;
    et.addEventListener("x", (e) => {
      target = e.target;
      e.preventDefault();
    });
    eq(et.dispatchEvent(new Event("x", { cancelable: true })), false);
    eq(target, et);
  });
  t.test("listeners: once, duplicates ignored, removeEventListener", () => {
    const et = new EventTarget();
    let n = 0;
    const f = () => n++;
    et.addEventListener("x", f);
    et.addEventListener("x", f);
    et.addEventListener("y", f, { once: true });
    et.dispatchEvent(new Event("x"));
    et.dispatchEvent(new Event("y"));
    et.dispatchEvent(new Event("y"));
    et.removeEventListener("x", f);
    et.dispatchEvent(new Event("x"));
    eq(n, 2);
  });
  t.test("handleEvent objects are called", () => {
    const et = new EventTarget();
    let n = 0;
    et.addEventListener("x", { handleEvent: () => void n++ });
    et.dispatchEvent(new Event("x"));
    eq(n, 1);
  });
  t.test("stopImmediatePropagation stops later listeners", () => {
    const et = new EventTarget();
    const seen: number[] = [];
    et.addEventListener("x", (e) => (seen.push(1), e.stopImmediatePropagation()));
    et.addEventListener("x", () => void seen.push(2));
    et.dispatchEvent(new Event("x"));
    arrayEq(seen, [1]);
  });
  t.test("dispatching an event twice throws InvalidStateError", () => {
    const et = new EventTarget();
    const e = new Event("x");
    let inner = "";
    et.addEventListener("x", () => {
      try {
        et.dispatchEvent(e);
        inner = "no error";
      } catch (err) {
        inner = (err as Error).name;
      }
    });
    et.dispatchEvent(e);
    eq(inner, "InvalidStateError");
  });
  t.test("signal option removes the listener", () => {
    const et = new EventTarget();
    const ac = new AbortController();
    let n = 0;
    et.addEventListener("x", () => n++, { signal: ac.signal });
    ac.abort();
    et.dispatchEvent(new Event("x"));
    eq(n, 0);
  });
  t.test("CustomEvent detail", () => eq(new CustomEvent("x", { detail: 5 }).detail, 5));
  t.test("EventTarget can be subclassed", () => {
    class My extends EventTarget {}
    const m = new My();
    let n = 0;
    m.addEventListener("x", () => n++);
    m.dispatchEvent(new Event("x"));
    eq(n, 1);
  });

  t.area = "structuredClone";
  t.test("clones primitives, objects, arrays, Date, RegExp, Map, Set", () => {
    const v = {
      a: 1,
      b: [1, "x", null, undefined, true],
      d: new Date(5),
      r: /x/gi,
      m: new Map([[1, 2]]),
      s: new Set([3]),
    };
    const c = structuredClone(v);
    ok(c !== v);
    eq(c.b[1], "x");
    eq(c.d.getTime(), 5);
    eq(c.r.flags, "gi");
    eq(c.m.get(1), 2);
    ok(c.s.has(3));
  });
  t.test("keeps shared and circular references", () => {
    const o: Record<string, unknown> = {};
    o.self = o;
    const c = structuredClone(o);
    eq(c.self, c);
  });
  t.test("clones typed arrays, ArrayBuffer, DataView", () => {
    const u = new Uint16Array([1, 2]);
    const c = structuredClone({ u, b: u.buffer, d: new DataView(u.buffer) });
    eq(c.u[1], 2);
    eq(c.u.buffer, c.b);
    eq(c.d.buffer, c.b);
  });
  t.test("clones BigInt, boxed primitives, errors", () => {
    eq(structuredClone(10n), 10n);
    eq(structuredClone(new String("s")).valueOf(), "s");
    const e = structuredClone(new RangeError("m"));
    ok(e instanceof RangeError);
    eq(e.message, "m");
  });
  t.test("clones a Blob", async () => eq(await structuredClone(new Blob(["ab"])).text(), "ab"));
  for (const [label, mk] of [
    ["a function", () => () => 1],
    ["a symbol", () => Symbol("x")],
    ["a URL", () => new URL("http://x/")],
    ["a Request", () => new Request("http://x/")],
    ["a Response", () => new Response()],
    ["a Headers", () => new Headers()],
    ["an AbortSignal", () => new AbortController().signal],
    ["a ReadableStream", () => new ReadableStream()],
    ["a WeakMap", () => new WeakMap()],
    ["a Promise", () => Promise.resolve()],
  ] as [string, () => unknown][]) {
    t.test(`structuredClone of ${label} throws DataCloneError`, () =>
      throws("DataCloneError", () => structuredClone(mk())),
    );
  }
  t.test("transfer detaches the ArrayBuffer", () => {
    const b = new ArrayBuffer(4);
    const c = structuredClone(b, { transfer: [b] });
    eq(b.byteLength, 0);
    eq(c.byteLength, 4);
  });
  t.test("structuredClone without arguments throws TypeError", () =>
    throws("TypeError", () => (structuredClone as unknown as () => unknown)()),
  );
}
