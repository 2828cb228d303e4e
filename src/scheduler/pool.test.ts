/**
 * The scheduler tells the executor which starts are a version's first instance (a cold
 * start from zero, with requests waiting), so that an executor that queues starts can put
 * them ahead of scale-out starts of functions already serving.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { validateConfig } from "../build/config.ts";
import type { Executor, Instance, InstanceSpec, StartOptions } from "../executors/types.ts";
import { Scheduler } from "./pool.ts";

/** An executor whose starts complete when the test says so; it records each start's options. */
function recordingExecutor(): {
  executor: Executor;
  starts: { fn: string; first: boolean }[];
  finish: () => void;
} {
  const starts: { fn: string; first: boolean }[] = [];
  const pending: (() => void)[] = [];
  let seq = 0;
  const executor: Executor = {
    kind: "process",
    start(spec: InstanceSpec, options?: StartOptions): Promise<Instance> {
      starts.push({ fn: spec.functionName, first: options?.first === true });
      const instance: Instance = {
        id: `i${++seq}`,
        spec,
        inflight: 0,
        background: 0,
        state: "idle",
        lastUsed: Date.now(),
        invoke() {},
        kill() {},
        cancel() {},
        stop: async () => {},
        onExit() {},
      };
      return new Promise((res) => pending.push(() => res(instance)));
    },
    check: async () => ({ ok: true, loadMs: 0 }),
    close: async () => {},
  };
  return {
    executor,
    starts,
    finish: () => {
      for (const f of pending.splice(0)) f();
    },
  };
}

const spec = (fn: string): InstanceSpec => ({
  functionName: fn,
  tenant: "default",
  version: 1,
  codeDir: "/nonexistent",
  memoryMB: 128,
  timeoutMs: 1000,
  env: {},
});

test("a version's first instance is started as first; more instances of it are not", async () => {
  const { executor, starts, finish } = recordingExecutor();
  const s = new Scheduler({ executors: { process: executor }, autoscaleIntervalMs: 0 });
  try {
    const config = validateConfig({ maxInstances: 3 });
    const a = s.pool(spec("a"), config);
    const b = s.pool(spec("b"), config);
    // Three requests at a (concurrency 1): three starts, only the first from zero.
    const leases = [a.acquire(), a.acquire(), a.acquire(), b.acquire()];
    assert.deepEqual(starts, [
      { fn: "a", first: true },
      { fn: "a", first: false },
      { fn: "a", first: false },
      { fn: "b", first: true },
    ]);
    finish();
    for (const l of await Promise.all(leases)) assert.equal(l.cold, true);
    // a has instances now: another start of it is a scale-out.
    a.startOne();
    assert.deepEqual(starts.at(-1), { fn: "a", first: false });
    finish();
  } finally {
    await s.close(0);
  }
});
