/**
 * Issue 9, point 4 — abuse of named queues. Everything an instance sends is untrusted: a
 * QUEUE_SEND frame is checked by the frame guard (sizes, counts, content types) and must name
 * one of the function's own producer bindings, or the instance is stopped. Every send has a
 * bound: 128 KB a message, 100 messages and 256 KB a batch, 16 sends waiting per instance,
 * and each queue's backlog (429 NIMBUS_QUEUE_BACKLOG_FULL) — which also bounds a consumer
 * that sends to its own queue in a loop.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { checkQueueSend, FrameGuard, FrameViolation } from "../../src/invoker/frame-guard.ts";
import { encodeFrame, T } from "../../src/runtime/protocol.ts";
import { cleanup, sleep, startTestServer, type TestServer } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-queues-sec-"));
after(() => cleanup(dir));

const meta = (n: number, bytes = 1) => ({
  req: 1,
  binding: "JOBS",
  messages: Array.from({ length: n }, () => ({ bytes, contentType: "text" })),
});

describe("the frame guard on QUEUE_SEND", () => {
  test("attack: a send whose message sizes do not add up to its payload → violation", () => {
    assert.throws(() => checkQueueSend(meta(2, 5), Buffer.alloc(9)), FrameViolation);
  });
  test("attack: 101 messages in one send → violation", () => {
    assert.throws(() => checkQueueSend(meta(101), Buffer.alloc(101)), FrameViolation);
  });
  test("attack: a message over 128 KB, or an unknown content type, or a bad binding name → violation", () => {
    assert.throws(() => checkQueueSend(meta(1, 131_073), Buffer.alloc(131_073)), FrameViolation);
    const m = meta(1);
    m.messages[0]!.contentType = "v8-serialized-object";
    assert.throws(() => checkQueueSend(m, Buffer.alloc(1)), FrameViolation);
    assert.throws(() => checkQueueSend({ ...meta(1), binding: "../jobs" }, Buffer.alloc(1)), FrameViolation);
    assert.throws(() => checkQueueSend({ ...meta(1), req: -1 }, Buffer.alloc(1)), FrameViolation);
  });
  test("attack: a 1 MB QUEUE_SEND frame → refused from its length prefix, before it is buffered", () => {
    const why: string[] = [];
    const g = new FrameGuard({
      onFrame: () => assert.fail("no frame passes"),
      onViolation: (w) => why.push(w),
    });
    const head = Buffer.alloc(5);
    head.writeUInt32LE(1024 * 1024, 0);
    head.writeUInt8(T.QUEUE_SEND, 4);
    g.push(head);
    assert.equal(why.length, 1);
    assert.match(why[0]!, /at most/);
  });
  test("a well-formed send passes with its meta cleaned", () => {
    const out = checkQueueSend({ ...meta(2, 3), extra: "dropped" }, Buffer.alloc(6));
    assert.deepEqual(Object.keys(out).sort(), ["binding", "messages", "req"]);
  });
});

/** Writes the request body to fd 3 as it is (a forged frame), or floods sends (`/flood`). */
const RAW_SENDER = `import { Socket } from "node:net";
function channel(): Socket {
  for (const h of (process as any)._getActiveHandles() as unknown[]) {
    if (h instanceof Socket && (h as any)._handle?.fd === 3) return h;
  }
  throw new Error("no control channel");
}
export default {
  async fetch(request: Request, env: any) {
    if (new URL(request.url).pathname === "/flood") {
      const r = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => env.JOBS.send("m" + i)));
      return Response.json({
        sent: r.filter((x) => x.status === "fulfilled").length,
        refused: r.filter((x) => x.status === "rejected").map((x: any) => x.reason.message)[0] ?? null,
      });
    }
    channel().write(Buffer.from(await request.arrayBuffer()));
    await new Promise((r) => setTimeout(r, 500));
    return new Response("written");
  },
};
`;

const LOOPER = `export default {
  fetch: () => new Response("alive"),
  async queue(batch: any, env: any) {
    for (const m of batch.messages) {
      // Each message sends ten more to its own queue: unbounded growth, but for the backlog.
      await env.SELF.sendBatch(Array.from({ length: 10 }, () => ({ body: m.body }))).catch(() => {});
      m.ack();
    }
  },
};
`;

describe("queues against a real server", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ args: ["--queue-wait", "120000"] });
    for (const [name, extra] of [
      ["mine", []],
      ["victim", []],
      ["small", ["--max-backlog", "20"]],
      ["loopq", ["--max-backlog", "50"]],
    ] as const) {
      const r = await s.cli(["queue", "create", name, ...extra]);
      assert.equal(r.code, 0, r.stderr);
    }
    writeFileSync(join(dir, "raw.ts"), RAW_SENDER);
    let d = await s.deploy("raw", join(dir, "raw.ts"), {
      queues: { producers: { JOBS: "mine" } },
      timeout: "5s",
    });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    writeFileSync(join(dir, "looper.ts"), LOOPER);
    d = await s.deploy("looper", join(dir, "looper.ts"), {
      queues: {
        producers: { SELF: "loopq" },
        consumers: [{ queue: "loopq", batchSize: 5, maxWait: "50ms", concurrency: 2 }],
      },
    });
    assert.equal(d.status, 200, JSON.stringify(d.body));
  });
  after(async () => {
    await s?.stop();
    if (s) cleanup(s.dataDir);
  });

  const stats = async (q: string) => (await s.api("GET", `/api/v1/queues/${q}`)).body.stats;
  const forged = (binding: string, bodies: string[], sizes = bodies.map((b) => Buffer.byteLength(b))) =>
    encodeFrame(
      T.QUEUE_SEND,
      0,
      { req: 1, binding, messages: sizes.map((bytes) => ({ bytes, contentType: "text" })) },
      Buffer.from(bodies.join("")),
    );
  const post = async (path: string, body?: Buffer) => {
    const r = await fetch(`${s.url}${path}`, {
      method: "POST",
      body: body as BodyInit | undefined,
      signal: AbortSignal.timeout(90_000),
    });
    return { status: r.status, text: await r.text() };
  };

  test("attack: a function forges a send through a binding it does not have → its instance is stopped, nothing is stored", async () => {
    const r = await post("/fn/raw", forged("VICTIM", ["stolen"]));
    assert.equal(r.status, 502, r.text);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_INSTANCE_PROTOCOL");
    const v = await stats("victim");
    assert.equal(v.ready + v.leased + v.delayed + v.dead + v.succeeded, 0);
    // The function's own binding still works from a new instance.
    const own = await post("/fn/raw", forged("JOBS", ["fine"]));
    assert.equal(own.status, 200, own.text);
    assert.equal((await stats("mine")).ready, 1);
  });

  test("attack: a forged send whose sizes lie about its payload → instance stopped, nothing stored", async () => {
    const before = (await stats("mine")).ready;
    const r = await post("/fn/raw", forged("JOBS", ["abc", "def"], [1, 100]));
    assert.equal(r.status, 502, r.text);
    assert.equal((await stats("mine")).ready, before);
  });

  test("attack: a function floods 40 sends at once → at most 16 wait; the rest are refused in the function", async () => {
    const r = await post("/fn/raw/flood");
    assert.equal(r.status, 200, r.text);
    const j = JSON.parse(r.text);
    assert.ok(j.sent >= 16 && j.sent < 40, r.text);
    assert.match(j.refused, /already waiting/);
  });

  test("attack: a 129 KB message, a 101-message batch, a 300 KB batch → 413 / 400 / 413, nothing stored", async () => {
    const before = (await stats("mine")).ready;
    const big = await fetch(`${s.url}/api/v1/queues/mine/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${s.adminKey}`, "content-type": "text/plain" },
      body: "x".repeat(129 * 1024),
    });
    assert.equal(big.status, 413);
    const many = await s.api("POST", "/api/v1/queues/mine/messages/batch", {
      messages: Array.from({ length: 101 }, () => ({ body: 1 })),
    });
    assert.equal(many.status, 400);
    const heavy = await s.api("POST", "/api/v1/queues/mine/messages/batch", {
      messages: Array.from({ length: 3 }, () => ({ body: "y".repeat(100_000), contentType: "text" })),
    });
    assert.equal(heavy.status, 413);
    assert.equal(heavy.body.error.code, "NIMBUS_PAYLOAD_TOO_LARGE");
    assert.equal((await stats("mine")).ready, before);
  });

  test("attack: sending past a queue's backlog → 429 NIMBUS_QUEUE_BACKLOG_FULL with Retry-After, the backlog holds", async () => {
    let refused: { headers: Headers; body: any } | undefined;
    for (let i = 0; i < 30 && !refused; i++) {
      const r = await fetch(`${s.url}/api/v1/queues/small/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${s.adminKey}`, "content-type": "text/plain" },
        body: `m${i}`,
      });
      const body = await r.json();
      if (r.status === 429) refused = { headers: r.headers, body };
      else assert.equal(r.status, 202);
    }
    assert.ok(refused, "the 21st send is refused");
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.equal(refused.body.error.code, "NIMBUS_QUEUE_BACKLOG_FULL");
    assert.equal((await stats("small")).ready, 20);
  });

  test("attack: a consumer that sends ten messages per message to its own queue → growth stops at the backlog; the server keeps serving", async () => {
    const r = await s.api("POST", "/api/v1/queues/loopq/messages", { seed: true });
    assert.equal(r.status, 202);
    let peak = 0;
    let processed = 0;
    for (let i = 0; i < 30; i++) {
      await sleep(200);
      const st = await stats("loopq");
      peak = Math.max(peak, st.ready + st.delayed + st.leased);
      processed = st.succeeded;
    }
    assert.ok(peak <= 50, `undelivered messages stayed within the backlog (peak ${peak})`);
    assert.ok(processed > 5, `the loop ran (${processed} messages consumed)`);
    const alive = await fetch(`${s.url}/fn/looper`);
    assert.equal(await alive.text(), "alive");
    const rm = await s.cli(["queue", "rm", "loopq"]);
    assert.equal(rm.code, 0, rm.stderr);
  });
});
