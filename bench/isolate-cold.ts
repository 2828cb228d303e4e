/**
 * `node --no-node-snapshot bench/isolate-cold.ts [samples] [isolate|context]`: where an isolate
 * cold start's milliseconds go, measured on the isolate executor alone (no gateway, no
 * scheduler): `start()` (LOAD to LOADED: blank isolate or context, compile, instantiate,
 * evaluate; `loadMs` is the host's own part of it) and the first invocation after it (INVOKE
 * to RESP_END). Each sample loads the hello function under a new name into a fresh isolate
 * (or context), then stops it. Prints medians as JSON.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "../src/build/bundle.ts";
import { IsolateExecutor } from "../src/executors/isolate/executor.ts";
import { detectProtections } from "../src/executors/process/sandbox.ts";
import type { Instance } from "../src/executors/types.ts";
import { HELLO_FN } from "./harness.ts";

const samples = Number(process.argv[2] ?? 40);
const isolation = process.argv[3] === "context" ? "context" : "isolate";
const dir = mkdtempSync(join(tmpdir(), "nimbus-isocold-"));
const ex = new IsolateExecutor({ dataDir: dir, protections: detectProtections(), isolation });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

function invokeOnce(inst: Instance): Promise<void> {
  inst.inflight++;
  return new Promise((resolve, reject) =>
    inst.invoke(
      {
        invocationId: "cold",
        method: "GET",
        url: "http://127.0.0.1/fn/hello",
        headers: [["user-agent", "bench"]],
        deadline: Date.now() + 10_000,
        sourceIp: "127.0.0.1",
        trigger: "http",
      },
      Buffer.alloc(0),
      {
        head() {},
        chunk(_d, consumed) {
          consumed();
        },
        end: () => resolve(),
        fail: (e) => reject(e),
        log() {},
        done() {},
      },
    ),
  );
}

try {
  await ex.waitReady();
  const b = await bundle(HELLO_FN, { executor: "isolate" });
  const codeDir = join(dir, "code");
  mkdirSync(codeDir);
  writeFileSync(join(codeDir, "index.mjs"), b.code);
  if (b.sourceMap) writeFileSync(join(codeDir, "index.mjs.map"), b.sourceMap);
  const start: number[] = [];
  const first: number[] = [];
  const second: number[] = [];
  for (let i = 0; i < samples; i++) {
    // A pause like the cold-start bench's: the host tops its spares up in quiet moments.
    await new Promise((r) => setTimeout(r, 150));
    const t0 = performance.now();
    const inst = await ex.start({
      functionName: `cold${i}`,
      tenant: "default",
      version: 1,
      codeDir,
      memoryMB: 128,
      timeoutMs: 10_000,
      env: {},
    });
    const t1 = performance.now();
    await invokeOnce(inst);
    const t2 = performance.now();
    await invokeOnce(inst);
    const t3 = performance.now();
    start.push(t1 - t0);
    first.push(t2 - t1);
    second.push(t3 - t2);
    await inst.stop();
  }
  console.log(
    JSON.stringify({
      isolation,
      samples,
      startP50Ms: +median(start).toFixed(3),
      firstInvokeP50Ms: +median(first).toFixed(3),
      warmInvokeP50Ms: +median(second).toFixed(3),
    }),
  );
} finally {
  await ex.close();
  rmSync(dir, { recursive: true, force: true });
}
