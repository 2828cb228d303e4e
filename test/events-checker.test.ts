/**
 * A Jepsen-style queue checker for async invocations. Thousands of events are sent; the
 * server is killed with SIGKILL several times mid-run and restarted on the same data
 * directory; some attempts crash their instance. At the end every acknowledged (202) event
 * must have exactly one terminal outcome (succeeded or dead-lettered): lost = 0. Duplicate
 * executions (at-least-once) are counted from the function's side effect and reported.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

const TOTAL = Number(process.env.CHECKER_EVENTS ?? 1000);
const KILL_AT = [0.25, 0.5, 0.75].map((f) => Math.floor(TOTAL * f));
const WORKERS = 16;
const ARGS = ["--retry-base", "20", "--queue-wait", "2000", "--lease-grace", "500"];

test("checker: SIGKILLed server and crashing instances lose no acknowledged event", {
  timeout: 170_000,
}, async () => {
  // The side effect: how many times each event key was executed to completion.
  const executed = new Map<string, number>();
  const counter = createServer((req, res) => {
    let key = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      key += c;
    });
    req.on("end", () => {
      executed.set(key, (executed.get(key) ?? 0) + 1);
      res.end();
    });
  });
  await new Promise<void>((r) => counter.listen(0, "127.0.0.1", r));
  const port = (counter.address() as AddressInfo).port;

  let s: TestServer = await startTestServer({ args: ARGS });
  const dataDir = s.dataDir;
  try {
    const d = await s.deploy("chk", "events/checker.ts", {
      retries: 2,
      timeout: 10,
      maxInstances: 4,
      concurrency: 8,
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));

    const acked = new Map<string, { id: string; fail: boolean; crash: boolean }>();
    const indeterminate = new Set<string>();
    let next = 0;
    let kills = 0;
    let restarting: Promise<void> | undefined;

    const kill = async () => {
      kills++;
      await s.stop("SIGKILL");
      s = await startTestServer({ dataDir, args: ARGS });
    };

    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= TOTAL) return;
        const fail = i % 10 === 3;
        const crash = i % 200 === 7;
        for (let tries = 0; ; tries++) {
          if (restarting) await restarting;
          const key = `e${i}.${tries}`;
          const q = `report=${port}${fail ? "&fail=1" : ""}${crash ? "&crash=1" : ""}`;
          try {
            const res = await fetch(`${s.url}/fn/chk?${q}`, {
              method: "POST",
              headers: { "x-nimbus-invocation-type": "event" },
              body: key,
            });
            const body = (await res.json()) as { invocationId?: string };
            if (res.status === 202 && body.invocationId) {
              acked.set(key, { id: body.invocationId, fail, crash });
              break;
            }
            indeterminate.add(key);
          } catch {
            // No answer: the event may or may not be stored (Jepsen's "info"); send a new one.
            indeterminate.add(key);
            await sleep(50);
          }
        }
        if (kills < KILL_AT.length && acked.size >= KILL_AT[kills]! && !restarting) {
          restarting = kill().finally(() => {
            restarting = undefined;
          });
        }
      }
    };
    const sendStart = Date.now();
    await Promise.all(Array.from({ length: WORKERS }, worker));
    if (restarting) await restarting;
    assert.equal(kills, 3, "the server was killed three times mid-run");

    const sendMs = Date.now() - sendStart;
    const settleStart = Date.now();
    // Every acknowledged event must reach a terminal state.
    const terminal = new Set(["succeeded", "dead-lettered", "expired"]);
    let states = new Map<string, any>();
    const deadline = Date.now() + 100_000;
    for (;;) {
      const r = await s.api("GET", "/api/v1/functions/chk/async-invocations?limit=10000");
      states = new Map(r.body.invocations.map((v: any) => [v.invocationId, v]));
      const open = [...acked.values()].filter((a) => !terminal.has(states.get(a.id)?.state));
      if (open.length === 0 || Date.now() > deadline) break;
      await sleep(500);
    }

    let lost = 0;
    let succeeded = 0;
    let dead = 0;
    let duplicates = 0;
    let phantom = 0;
    let failSucceeded = 0;
    for (const [key, a] of acked) {
      const v = states.get(a.id);
      if (!v || !terminal.has(v.state)) {
        lost++;
        continue;
      }
      const n = executed.get(key) ?? 0;
      if (v.state === "succeeded") {
        succeeded++;
        if (n === 0) phantom++;
        if (a.fail) failSucceeded++;
      } else dead++;
      if (n > 1) duplicates += n - 1;
    }
    const ids = new Set([...acked.values()].map((a) => a.id));
    const byState: Record<string, number> = {};
    for (const a of acked.values()) {
      const st = states.get(a.id)?.state ?? "missing";
      byState[st] = (byState[st] ?? 0) + 1;
    }
    const sample = [...states.values()].find((v: any) => v.state !== "succeeded" && v.error);
    const report = {
      byState,
      sampleError: sample?.error,
      sendMs,
      settleMs: Date.now() - settleStart,
      acknowledged: acked.size,
      indeterminate: indeterminate.size,
      kills,
      lost,
      succeeded,
      deadLettered: dead,
      duplicateExecutions: duplicates,
      successWithoutExecution: phantom,
      distinctIds: ids.size,
    };
    process.stdout.write(`checker: ${JSON.stringify(report)}\n`);
    assert.equal(acked.size, TOTAL);
    assert.equal(ids.size, acked.size, "every acknowledged event got its own id");
    assert.equal(lost, 0, "no acknowledged event is lost");
    assert.equal(phantom, 0, "no event is marked succeeded without having run");
    assert.equal(failSucceeded, 0, "an event that always fails never shows as succeeded");
    assert.equal(succeeded + dead, acked.size, "each acknowledged event has exactly one terminal outcome");
    assert.ok(dead >= TOTAL / 10, "the failing tenth is dead-lettered");
  } finally {
    await s.stop();
    counter.close();
    cleanup(dataDir);
  }
});
