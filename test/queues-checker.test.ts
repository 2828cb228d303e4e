/**
 * A Jepsen-style checker for named queues. Messages are sent through the API and through a
 * function's producer binding (`env.JOBS.send`, acknowledged when the function answered);
 * the server is SIGKILLed twice mid-run and restarted on the same data directory while a
 * consumer drains the queue in batches. At the end every acknowledged message must have
 * exactly one terminal outcome (succeeded, or dead for the ones that always ask to retry):
 * lost = 0. Duplicate deliveries (at least once) are counted from the consumer's side
 * effect and reported.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { CHECKER_ARGS, cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

const TOTAL = Number(process.env.QUEUE_CHECKER_MESSAGES ?? 200);
const KILL_AT = [1 / 3, 2 / 3].map((f) => Math.floor(TOTAL * f));
const WORKERS = 12;
// The functions report to the test's counter on loopback: the operator grants that address.
const ARGS = CHECKER_ARGS;

test("queue checker: SIGKILLed server loses no acknowledged message", { timeout: 400_000 }, async () => {
  // The side effect: deliveries per message key (reported by the consumer before it acks).
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

  const t0 = Date.now();
  const progress = (what: string) => process.stderr.write(`queue checker +${Date.now() - t0} ms: ${what}\n`);
  let s: TestServer = await startTestServer({ args: ARGS });
  const dataDir = s.dataDir;
  try {
    assert.equal((await s.cli(["queue", "create", "chk", "--max-retries", "5"])).code, 0);
    const d = await s.deploy("chk", "queues/worker.ts", {
      timeout: 10,
      network: { default: "allow", allow: ["127.0.0.1/32"] },
      queues: {
        producers: { JOBS: "chk" },
        consumers: [{ queue: "chk", batchSize: 10, maxWait: "100ms", concurrency: 4 }],
      },
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));

    /** Acknowledged sends: by key, with the id when the API gave one. */
    const acked = new Map<string, { id?: string; retry: boolean }>();
    let indeterminate = 0;
    let next = 0;
    let kills = 0;
    let restarting: Promise<void> | undefined;
    const kill = async () => {
      kills++;
      progress(`SIGKILL ${kills} at ${acked.size} acknowledged`);
      await s.stop("SIGKILL");
      s = await startTestServer({ dataDir, args: ARGS });
      progress("restarted");
    };

    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= TOTAL) return;
        const retry = i % 10 === 3;
        const viaFunction = i % 10 === 5;
        for (let tries = 0; ; tries++) {
          if (restarting) await restarting;
          const key = `m${i}.${tries}`;
          const body = JSON.stringify({ key, mode: retry ? "retry" : "ok", port });
          try {
            if (viaFunction) {
              const r = await fetch(`${s.url}/fn/chk/send`, { method: "POST", body });
              if ((await r.text()) === "sent") {
                acked.set(key, { retry });
                break;
              }
            } else {
              const r = await fetch(`${s.url}/api/v1/queues/chk/messages`, {
                method: "POST",
                headers: { authorization: `Bearer ${s.adminKey}`, "content-type": "application/json" },
                body,
              });
              const j = (await r.json()) as { messageIds?: string[] };
              if (r.status === 202 && j.messageIds?.[0]) {
                acked.set(key, { id: j.messageIds[0], retry });
                break;
              }
            }
            indeterminate++;
          } catch {
            // No answer: the message may or may not be stored (Jepsen's "info"); send a new one.
            indeterminate++;
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
    await Promise.all(Array.from({ length: WORKERS }, worker));
    if (restarting) await restarting;
    assert.equal(kills, KILL_AT.length, "the server was killed mid-run");
    progress(`all ${acked.size} sends acknowledged`);

    // Drained: nothing waiting, delayed or leased; then read every message's state.
    let byId = new Map<string, any>();
    const deadline = Date.now() + 150_000;
    for (;;) {
      const st = (await s.api("GET", "/api/v1/queues/chk")).body.stats;
      const r = await s.api("GET", "/api/v1/queues/chk/messages?limit=10000");
      byId = new Map(r.body.messages.map((m: any) => [m.id, m]));
      progress(`draining: ${JSON.stringify(st)}`);
      if (st.ready + st.delayed + st.leased === 0 || Date.now() > deadline) break;
      await sleep(2000);
    }

    let lost = 0;
    let succeeded = 0;
    let dead = 0;
    let phantom = 0;
    let wrongOutcome = 0;
    const wrongErrors: string[] = [];
    let duplicates = 0;
    for (const [key, a] of acked) {
      const n = executed.get(key) ?? 0;
      if (a.retry) {
        if (n > 6) duplicates += n - 6;
      } else if (n > 1) duplicates += n - 1;
      if (!a.id) {
        // Sent by the function (no id to read): an "ok" one must have run, a "retry" one must
        // have been delivered.
        if (n === 0) lost++;
        continue;
      }
      const m = byId.get(a.id);
      if (!m || (m.state !== "succeeded" && m.state !== "dead")) {
        lost++;
        continue;
      }
      if (m.state === "succeeded") {
        succeeded++;
        if (n === 0) phantom++;
        if (a.retry) wrongOutcome++;
      } else {
        dead++;
        if (!a.retry) {
          wrongOutcome++;
          wrongErrors.push(String(m.error).slice(0, 300));
        }
      }
    }
    const open = [...byId.values()].filter((m) => m.state !== "succeeded" && m.state !== "dead").length;
    const report = {
      sampleError: [...byId.values()].find((m) => m.error)?.error?.slice(0, 300),
      acknowledged: acked.size,
      viaFunction: [...acked.values()].filter((a) => !a.id).length,
      indeterminate,
      kills,
      lost,
      succeeded,
      dead,
      open,
      wrongOutcome,
      duplicateDeliveries: duplicates,
      successWithoutDelivery: phantom,
      wrongErrors: wrongErrors.slice(0, 3),
    };
    process.stdout.write(`queue checker: ${JSON.stringify(report)}\n`);
    assert.equal(acked.size, TOTAL);
    assert.equal(lost, 0, "no acknowledged message is lost");
    assert.equal(open, 0, "every stored message reached a terminal state");
    assert.equal(phantom, 0, "no message is marked succeeded without having been delivered");
    assert.equal(wrongOutcome, 0, "acked ones succeed, always-retried ones die");
  } finally {
    await s.stop();
    counter.close();
    cleanup(dataDir);
  }
});
