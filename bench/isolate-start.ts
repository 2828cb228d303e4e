/**
 * `node --no-node-snapshot bench/isolate-start.ts [<checkout> …]`: what every isolate costs
 * from the runtime's snapshot, per checkout (default: this one), measured in this process:
 * the prelude's size, the snapshot's size, the heap of a fresh isolate, and the time to create
 * an isolate and context and make its first Web API calls (rounds interleaved across the
 * checkouts, so that load on the machine hits each alike). Compare a checkout of an older
 * commit with this one to see what a change to src/runtime/isolate/prelude costs.
 */
import { resolve } from "node:path";
import ivm from "isolated-vm";
import { ROOT } from "./harness.ts";

const roots = process.argv.slice(2).map((r) => resolve(r));
if (roots.length === 0) roots.push(ROOT);
const ROUNDS = 40;

const snaps = new Map<
  string,
  { snapshot: ivm.ExternalCopy<ArrayBuffer>; prelude: number; times: number[] }
>();
for (const root of roots) {
  const { preludeSource } = (await import(`${root}/src/executors/isolate/prelude.ts`)) as {
    preludeSource: () => Promise<string>;
  };
  const src = await preludeSource();
  const snapshot = ivm.Isolate.createSnapshot([{ code: src, filename: "nimbus:runtime" }], "__nimbus_warm()");
  snaps.set(root, { snapshot, prelude: src.length, times: [] });
}
const heaps = new Map<string, ivm.HeapStatistics>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [root, s] of snaps) {
    const t0 = performance.now();
    const iso = new ivm.Isolate({ memoryLimit: 128, snapshot: s.snapshot });
    const ctx = await iso.createContext();
    if (round === 0) heaps.set(root, iso.getHeapStatisticsSync());
    await ctx.eval(
      "new URL('http://localhost/p?x=1').pathname + new Headers([['a','b']]).get('a') + new Response('x').status",
    );
    s.times.push(performance.now() - t0);
    ctx.release();
    iso.dispose();
  }
}
console.log(
  "| checkout | prelude bytes | snapshot bytes | heap used (KiB) | heap total (KiB) | isolate + context + first calls, p50 (ms) |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const [root, s] of snaps) {
  const h = heaps.get(root)!;
  s.times.sort((a, b) => a - b);
  console.log(
    `| ${root} | ${s.prelude} | ${s.snapshot.copy().byteLength} | ${(h.used_heap_size / 1024).toFixed(0)} | ${(h.total_heap_size / 1024).toFixed(0)} | ${s.times[ROUNDS >> 1]!.toFixed(2)} |`,
  );
}
