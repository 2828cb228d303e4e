/**
 * Where an isolate's memory goes: run as its own process (so no freed memory of an earlier
 * measurement is reused), it creates `count` isolates the way the isolate host does, up to a
 * given stage, and prints one JSON line with the resident memory and V8 heap statistics per
 * isolate. bench/density.ts runs it once per stage.
 *
 * Stages: `bare` (an isolated-vm isolate and a context, no runtime), `runtime` (from the
 * runtime's startup snapshot, as the host creates them), `loaded` (plus the bridge, the hello
 * function's module, and one request served), `context` (one more context from the same
 * snapshot inside a single shared isolate: what a function would cost if a tenant's functions
 * shared isolates).
 *
 * Usage: node --no-node-snapshot bench/isolate-memory.ts <stage> [count]
 */
import { createRequire } from "node:module";
import { preludeSource } from "../src/executors/isolate/prelude.ts";

const require = createRequire(import.meta.url);
// isolated-vm ships its own types, but the bench only needs a handful of calls.
const ivm = require("isolated-vm");

/** One stage's figures, per isolate (or per context for `context`). */
export interface IsolateMemory {
  stage: string;
  count: number;
  rssKiB: number;
  usedHeapKiB: number;
  totalHeapKiB: number;
  executableKiB: number;
  mallocedKiB: number;
  snapshotKiB: number;
}

const HELLO = `export default { async fetch() { return new Response("Hello, world!\\n", { headers: { "content-type": "text/plain" } }); } };`;

async function main(): Promise<void> {
  const stage = process.argv[2] ?? "loaded";
  const count = Number(process.argv[3] ?? 200);
  const snapshot =
    stage === "bare"
      ? undefined
      : ivm.Isolate.createSnapshot(
          [{ code: await preludeSource(), filename: "nimbus:runtime" }],
          "__nimbus_warm()",
        );
  const noop = new ivm.Callback(() => {});
  const ref = new ivm.Reference(async () => 1);
  const rss = (): number => process.memoryUsage().rss;
  const isos: any[] = [];
  const heap = { used: 0, total: 0, exec: 0, malloc: 0 };
  const add = (h: any, sign = 1): void => {
    heap.used += sign * h.used_heap_size;
    heap.total += sign * h.total_heap_size;
    heap.exec += sign * h.total_heap_size_executable;
    heap.malloc += sign * h.malloced_memory;
  };
  let r0: number;
  if (stage === "context") {
    const iso = new ivm.Isolate({ memoryLimit: 1024, snapshot });
    isos.push(iso, await iso.createContext());
    r0 = rss();
    const before = iso.getHeapStatisticsSync();
    for (let i = 0; i < count; i++) isos.push(await iso.createContext());
    add(iso.getHeapStatisticsSync());
    add(before, -1);
  } else {
    r0 = rss();
    for (let i = 0; i < count; i++) {
      const iso = new ivm.Isolate({ memoryLimit: 128, snapshot });
      const ctx = await iso.createContext();
      if (stage === "loaded") {
        const api = await ctx.evalClosure(
          "return __nimbus_init($0, $1, $2, $3, $4, $5, $6, $7, $8)",
          [noop, noop, ref, ref, ref, noop, ref, noop, ref],
          { result: { reference: true } },
        );
        const mod = await iso.compileModule(HELLO, { filename: "file:///fn/index.mjs" });
        await mod.instantiate(ctx, () => {
          throw new Error("no imports");
        });
        await mod.evaluate();
        await api
          .getSync("setModule", { reference: true })
          .apply(undefined, [mod.namespace.derefInto()], { result: { copy: true } });
        const meta = {
          invocationId: "a",
          method: "GET",
          url: "http://x/",
          headers: [],
          deadline: Date.now() + 1000,
          sourceIp: "127.0.0.1",
        };
        await api
          .getSync("invoke", { reference: true })
          .apply(undefined, [JSON.stringify([[1, meta]]), [new Uint8Array(0)]], {
            arguments: { copy: true },
          });
        isos.push(api, mod);
      }
      isos.push(iso, ctx);
      add(iso.getHeapStatisticsSync());
    }
  }
  await new Promise((r) => setTimeout(r, 300));
  const kib = (n: number): number => Math.round(n / 1024 / count);
  const out: IsolateMemory = {
    stage,
    count,
    rssKiB: kib(rss() - r0),
    usedHeapKiB: kib(heap.used),
    totalHeapKiB: kib(heap.total),
    executableKiB: kib(heap.exec),
    mallocedKiB: kib(heap.malloc),
    snapshotKiB: snapshot ? Math.round(snapshot.copy().byteLength / 1024) : 0,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
