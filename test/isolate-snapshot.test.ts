/**
 * The isolate runtime's startup snapshot: what its warm-up leaves behind is what every isolate
 * starts with, so the warm-up may add compiled code but no state.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import ivm from "isolated-vm";
import { preludeSource } from "../src/executors/isolate/prelude.ts";

async function freshHeapKiB(snapshot: ivm.ExternalCopy<ArrayBuffer>): Promise<number> {
  const iso = new ivm.Isolate({ memoryLimit: 128, snapshot });
  try {
    const ctx = await iso.createContext();
    const used = iso.getHeapStatisticsSync().used_heap_size;
    ctx.release();
    return used / 1024;
  } finally {
    iso.dispose();
  }
}

test("the snapshot's warm-up adds compiled code only, not V8's full-size number-to-string cache (256 KiB)", async () => {
  const code = await preludeSource();
  const cold = ivm.Isolate.createSnapshot([{ code, filename: "nimbus:runtime" }]);
  const warm = ivm.Isolate.createSnapshot([{ code, filename: "nimbus:runtime" }], "__nimbus_warm()");
  const added = (await freshHeapKiB(warm)) - (await freshHeapKiB(cold));
  // Compiled code of the hot path is ~90 KiB; an invocation failing in the warm-up (and
  // formatting its error's stack) made it ~340 KiB.
  assert.ok(added < 180, `the warm-up added ${added.toFixed(0)} KiB to every isolate's heap`);
});
