/**
 * Named queues end to end against the real server: create/ls/info/send/rm through the CLI
 * and the API, producer bindings in both executors, Workers `queue()` and Lambda SQS
 * consumers with per-message outcomes (acked messages are not redelivered), retries, the
 * dead state, forwarding to a DLQ queue, redrive, and records of consumer invocations.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanup, deployIsolateSource, sleep, startTestServer, type TestServer } from "./helpers.ts";

let s: TestServer;
const srcDir = mkdtempSync(join(tmpdir(), "nimbus-queues-src-"));

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Sends JSON messages through the API's batch route; returns their ids. */
async function send(queue: string, bodies: unknown[]): Promise<string[]> {
  const r = await s.api("POST", `/api/v1/queues/${queue}/messages/batch`, {
    messages: bodies.map((body) => ({ body })),
  });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.messageIds;
}

/** Waits until every id is succeeded or dead; returns them by id. */
async function settled(queue: string, ids: string[]): Promise<Map<string, any>> {
  return until(`messages of ${queue} to settle`, async () => {
    const r = await s.api("GET", `/api/v1/queues/${queue}/messages?limit=10000`);
    const byId = new Map<string, any>(r.body.messages.map((m: any) => [m.id, m]));
    return ids.every((id) => ["succeeded", "dead"].includes(byId.get(id)?.state)) ? byId : undefined;
  });
}

const ISOLATE_SOURCE = `
export default {
  async fetch(request, env) {
    await env.ISO.send(await request.json());
    return new Response("sent");
  },
  async queue(batch, env) {
    for (const m of batch.messages) {
      if (m.body.mode === "retry-once" && m.attempts === 1) m.retry();
      else if (m.body.mode === "retry") m.retry();
      else m.ack();
    }
  },
};`;

describe("named queues", () => {
  before(async () => {
    s = await startTestServer({ args: ["--retry-base", "20"] });
    for (const args of [
      ["queue", "create", "jobs", "--max-retries", "2", "--dlq", "jobs-dlq", "--json"],
      ["queue", "create", "jobs-dlq"],
      ["queue", "create", "lam-q", "--max-retries", "1"],
      ["queue", "create", "iso-q", "--max-retries", "1"],
    ]) {
      const r = await s.cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
    const consumer = { queue: "jobs", batchSize: 10, maxWait: "200ms", concurrency: 2 };
    let d = await s.deploy("worker", "queues/worker.ts", {
      queues: { producers: { JOBS: "jobs" }, consumers: [consumer] },
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    d = await s.deploy("lam", "queues/lambda-sqs.ts", {
      queues: { consumers: [{ queue: "lam-q", batchSize: 10, maxWait: "200ms" }] },
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
    d = await deployIsolateSource(s, srcDir, "iso", ISOLATE_SOURCE, {
      queues: { producers: { ISO: "iso-q" }, consumers: [{ queue: "iso-q", maxWait: "100ms" }] },
    });
    assert.ok(d.status < 300, JSON.stringify(d.body));
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
    cleanup(srcDir);
  });

  test("CLI: create, ls, info, send --json; clear errors for a duplicate, a bad name, a missing queue", async () => {
    const ls = await s.cli(["queue", "ls", "--json"]);
    assert.equal(ls.code, 0, ls.stderr);
    const names = JSON.parse(ls.stdout).queues.map((q: any) => q.name);
    assert.deepEqual(names, ["iso-q", "jobs", "jobs-dlq", "lam-q"]);
    const info = JSON.parse((await s.cli(["queue", "info", "jobs", "--json"])).stdout);
    assert.equal(info.maxRetries, 2);
    assert.equal(info.dlq, "jobs-dlq");
    assert.equal(info.consumers[0].function, "worker");
    assert.equal(info.consumers[0].batchSize, 10);
    const dup = await s.cli(["queue", "create", "jobs"]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /NIMBUS_QUEUE_EXISTS/);
    const bad = await s.api("POST", "/api/v1/queues", { name: "Bad_Name" });
    assert.equal(bad.status, 400);
    const missing = await s.cli(["queue", "send", "nope", "-d", "{}"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /NIMBUS_QUEUE_NOT_FOUND/);
    const sent = await s.cli(["queue", "send", "jobs", "-d", '{"key":"cli","mode":"ok"}', "--json"]);
    assert.equal(sent.code, 0, sent.stderr);
    const [id] = JSON.parse(sent.stdout).messageIds;
    const done = await settled("jobs", [id]);
    assert.equal(done.get(id).state, "succeeded");
    assert.equal(done.get(id).sender, "api");
  });

  test("send → consume → ack: each message delivered once and acknowledged", async () => {
    const ids = await send(
      "jobs",
      Array.from({ length: 25 }, (_, i) => ({ key: `a${i}`, mode: "ok" })),
    );
    const done = await settled("jobs", ids);
    for (const id of ids) {
      assert.equal(done.get(id).state, "succeeded");
      assert.equal(done.get(id).attempts, 1, "an acked message is not delivered again");
    }
  });

  test("Workers queue(): per-message retry — acked messages stay done, retried ones come back, out of retries → dead and forwarded to the DLQ queue", async () => {
    const before = (await s.api("GET", "/api/v1/queues/jobs-dlq")).body.stats.ready;
    const [ok, once, always] = await send("jobs", [
      { key: "w-ok", mode: "ok" },
      { key: "w-once", mode: "retry-once" },
      { key: "w-always", mode: "retry" },
    ]);
    const done = await settled("jobs", [ok!, once!, always!]);
    assert.deepEqual([done.get(ok!).state, done.get(ok!).attempts], ["succeeded", 1]);
    assert.deepEqual([done.get(once!).state, done.get(once!).attempts], ["succeeded", 2]);
    assert.deepEqual([done.get(always!).state, done.get(always!).attempts], ["dead", 3]);
    assert.match(done.get(always!).error, /Out of retries \(2\).*Forwarded to queue 'jobs-dlq'/);
    const dlq = await s.api("GET", "/api/v1/queues/jobs-dlq");
    assert.equal(dlq.body.stats.ready, before + 1);
    const dead = JSON.parse((await s.cli(["queue", "dlq", "ls", "jobs", "--json"])).stdout);
    assert.ok(dead.messages.some((m: any) => m.id === always));
  });

  test("a throw in queue(): messages acked before it stay acked, the rest are retried", async () => {
    const [ok, thrower] = await send("jobs", [
      { key: "t-ok", mode: "ok" },
      { key: "t-throw", mode: "throw" },
    ]);
    const done = await settled("jobs", [ok!, thrower!]);
    assert.deepEqual([done.get(ok!).state, done.get(ok!).attempts], ["succeeded", 1]);
    assert.deepEqual([done.get(thrower!).state, done.get(thrower!).attempts], ["dead", 3]);
  });

  test("redrive: dead messages are delivered again with attempts reset", async () => {
    const [always] = await send("jobs", [{ key: "r-always", mode: "retry" }]);
    await settled("jobs", [always!]);
    const r = await s.cli(["queue", "dlq", "redrive", "jobs", "--id", always!, "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).redriven, 1);
    // Delivered again: it runs its three attempts once more and dies again.
    await until("the redriven message to be delivered", async () => {
      const m = (await s.api("GET", "/api/v1/queues/jobs/messages?limit=10000")).body.messages.find(
        (x: any) => x.id === always,
      );
      return m.state === "dead" && m.attempts === 3 && m.enqueuedAt !== undefined ? m : undefined;
    });
    const p = await s.cli(["queue", "dlq", "purge", "jobs", "--json"]);
    assert.ok(JSON.parse(p.stdout).purged >= 1);
  });

  test("Lambda SQS shape: batchItemFailures retries only the listed messages; a throw or an unknown identifier retries the batch", async () => {
    const [ok, once, always] = await send("lam-q", [
      { mode: "ok" },
      { mode: "retry-once" },
      { mode: "retry" },
    ]);
    const done = await settled("lam-q", [ok!, once!, always!]);
    assert.deepEqual([done.get(ok!).state, done.get(ok!).attempts], ["succeeded", 1]);
    assert.deepEqual([done.get(once!).state, done.get(once!).attempts], ["succeeded", 2]);
    assert.deepEqual([done.get(always!).state, done.get(always!).attempts], ["dead", 2]);
    const [badId] = await send("lam-q", [{ mode: "bad-id" }]);
    const bad = await settled("lam-q", [badId!]);
    assert.deepEqual([bad.get(badId!).state, bad.get(badId!).attempts], ["dead", 2]);
    assert.match(bad.get(badId!).error, /not in the batch/);
  });

  test("producer binding (process executor): env.JOBS.send stores before it resolves; only bound queues exist in env", async () => {
    const b = await fetch(`${s.url}/fn/worker/bindings`);
    assert.deepEqual(await b.json(), { jobs: "object", other: "undefined" });
    const r = await fetch(`${s.url}/fn/worker/send`, {
      method: "POST",
      body: JSON.stringify({ key: "from-fn", mode: "ok" }),
    });
    assert.equal(await r.text(), "sent");
    // Resolved means stored: the message is in the queue now (in whatever state).
    const msgs = (await s.api("GET", "/api/v1/queues/jobs/messages?limit=10000")).body.messages;
    const mine = msgs.find((m: any) => m.sender === "fn:worker");
    assert.ok(mine, "the sent message is stored once send() resolved");
    const done = await settled("jobs", [mine.id]);
    assert.equal(done.get(mine.id).state, "succeeded");
    const big = await fetch(`${s.url}/fn/worker/send-big`);
    assert.equal(big.status, 400);
    assert.match(await big.text(), /at most 131072/);
  });

  test("isolate executor: env.ISO.send and a queue() consumer with per-message retry", async () => {
    for (const mode of ["ok", "retry-once"]) {
      const r = await fetch(`${s.url}/fn/iso`, { method: "POST", body: JSON.stringify({ mode }) });
      assert.equal(r.status, 200, await r.text());
    }
    const msgs = await until("two iso messages", async () => {
      const m = (await s.api("GET", "/api/v1/queues/iso-q/messages?limit=100")).body.messages;
      return m.length >= 2 ? m : undefined;
    });
    const ids = msgs.map((m: any) => m.id);
    const done = await settled("iso-q", ids);
    const attempts = ids.map((id: string) => done.get(id).attempts).sort();
    assert.deepEqual(attempts, [1, 2]);
    for (const id of ids) assert.equal(done.get(id).state, "succeeded");
    assert.equal(done.get(ids[0]).sender, "fn:iso");
  });

  test("records: consumer invocations are metered with trigger 'queue'", async () => {
    const r = await s.api("GET", "/api/v1/functions/worker/invocations?limit=200");
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const list = r.body.invocations ?? r.body;
    const q = list.filter((i: any) => i.trigger === "queue");
    assert.ok(q.length > 0, "queue deliveries are recorded");
    assert.ok(q.every((i: any) => i.billedMs >= 0 && i.memoryMB > 0));
  });

  test("rm deletes a queue; sends to it are refused", async () => {
    assert.equal((await s.cli(["queue", "create", "tmp-q"])).code, 0);
    await send("tmp-q", [{ x: 1 }]);
    const rm = await s.cli(["queue", "rm", "tmp-q", "--json"]);
    assert.equal(rm.code, 0, rm.stderr);
    const r = await s.api("POST", "/api/v1/queues/tmp-q/messages", { x: 1 });
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, "NIMBUS_QUEUE_NOT_FOUND");
  });
});
