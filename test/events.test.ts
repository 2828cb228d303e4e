/**
 * Async invocations end to end against the real server: 202 only once stored, the same
 * request delivered, states, retries, dead-letter queue, idempotency, bounds, records,
 * destinations.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

let s: TestServer;

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const terminal = new Set(["succeeded", "dead-lettered", "expired"]);
async function settled(id: string): Promise<any> {
  return until(`invocation ${id} to finish`, async () => {
    const r = await s.api("GET", `/api/v1/invocations/${id}`);
    return terminal.has(r.body.state) ? r.body : undefined;
  });
}

async function asyncUrl(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${s.url}/fn/${path}`, {
    method: "POST",
    headers: { "x-nimbus-invocation-type": "event", ...headers },
    body,
  });
  return {
    status: res.status,
    id: res.headers.get("x-nimbus-invocation-id"),
    body: (await res.json()) as any,
  };
}

describe("async invocations", () => {
  before(async () => {
    s = await startTestServer({ args: ["--retry-base", "20"] });
    for (const [name, file, config] of [
      ["echo", "events/echo-async.ts", { retries: 1 }],
      ["lam", "events/lambda-event.ts", { retries: 0 }],
      ["sink", "events/echo-async.ts", {}],
      [
        "reports",
        "events/echo-async.ts",
        { retries: 0, destinations: { onFailure: "fn:sink", onSuccess: "fn:sink" } },
      ],
      ["slow", "events/echo-async.ts", { maxQueuedEvents: 2, maxInstances: 1 }],
    ] as const) {
      const r = await s.deploy(name, file, config);
      assert.ok(r.status < 300, JSON.stringify(r.body));
    }
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  test("POST /fn/<name> with x-nimbus-invocation-type: event → 202 with the id, then the same request is delivered", async () => {
    const r = await asyncUrl("echo/some/path?x=1", "hello", {
      "x-custom": "yes",
      "content-type": "text/plain",
    });
    assert.equal(r.status, 202);
    assert.ok(r.id);
    assert.equal(r.body.invocationId, r.id);
    const done = await settled(r.id!);
    assert.equal(done.state, "succeeded");
    assert.equal(done.attempts, 1);
    assert.equal(done.result.status, 200);
    const echoed = JSON.parse(done.result.body);
    assert.equal(echoed.method, "POST");
    assert.equal(echoed.path, "/some/path");
    assert.equal(echoed.query, "?x=1");
    assert.equal(echoed.body, "hello");
    assert.equal(echoed.headers["x-custom"], "yes");
    assert.equal(echoed.headers["x-nimbus-invocation-type"], undefined, "the async switch is not delivered");
    assert.ok(done.queueWaitMs >= 0 && done.endToEndMs >= done.queueWaitMs);
  });

  test("Lambda's X-Amz-Invocation-Type: Event works too", async () => {
    const res = await fetch(`${s.url}/fn/echo`, {
      method: "POST",
      headers: { "X-Amz-Invocation-Type": "Event" },
      body: "x",
    });
    assert.equal(res.status, 202);
    const id = res.headers.get("x-nimbus-invocation-id")!;
    assert.equal((await settled(id)).state, "succeeded");
  });

  test("POST /api/v1/functions/<name>/invocations delivers the JSON payload as the Lambda event", async () => {
    const r = await s.api("POST", "/api/v1/functions/lam/invocations", { order: 42, items: ["a"] });
    assert.equal(r.status, 202);
    const done = await settled(r.body.invocationId);
    assert.equal(done.state, "succeeded");
    assert.deepEqual(JSON.parse(done.result.body), { event: { order: 42, items: ["a"] } });
  });

  test("the API route delivers the payload to a fetch handler as a POST body", async () => {
    const r = await s.api("POST", "/api/v1/functions/echo/invocations", { hi: 1 });
    const done = await settled(r.body.invocationId);
    const echoed = JSON.parse(done.result.body);
    assert.equal(echoed.method, "POST");
    assert.deepEqual(JSON.parse(echoed.body), { hi: 1 });
  });

  test("a failing event is retried (retries: 1 → 2 attempts), then dead-lettered; dlq ls/show/redrive/purge", async () => {
    const r = await asyncUrl("echo/?fail=1", "payload-1");
    const done = await settled(r.id!);
    assert.equal(done.state, "dead-lettered");
    assert.equal(done.attempts, 2);
    assert.match(done.error, /NIMBUS_FUNCTION_ERROR/);

    const ls = await s.cli(["dlq", "ls", "echo", "--json"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.ok(JSON.parse(ls.stdout).events.some((e: any) => e.invocationId === r.id));
    const show = await s.cli(["dlq", "show", "echo", r.id!]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /payload-1/);

    const rd = await s.cli(["dlq", "redrive", "echo", r.id!, "--json"]);
    assert.equal(JSON.parse(rd.stdout).redriven, 1);
    // It fails again with fresh attempts and lands back in the DLQ.
    await until("the redriven event to be dead again", async () => {
      const v = (await s.api("GET", `/api/v1/invocations/${r.id}`)).body;
      return v.state === "dead-lettered" && v.attempts === 2 && v.lastAttemptAt ? v : undefined;
    });
    const purge = await s.cli(["dlq", "purge", "echo", "--json"]);
    assert.ok(JSON.parse(purge.stdout).purged >= 1);
    assert.equal((await s.api("GET", "/api/v1/functions/echo/dlq")).body.events.length, 0);
  });

  test("a 5xx answer from a fetch handler counts as a failure; retries: 0 dead-letters at once", async () => {
    const r = await s.api("POST", "/api/v1/functions/lam/invocations", { fail: true });
    const done = await settled(r.body.invocationId);
    assert.equal(done.state, "dead-lettered");
    assert.equal(done.attempts, 1);
  });

  test("Idempotency-Key: a repeat returns the first id and runs nothing more", async () => {
    const a = await asyncUrl("echo", "once", { "idempotency-key": "order-77" });
    const b = await asyncUrl("echo", "twice", { "idempotency-key": "order-77" });
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.equal(b.id, a.id);
    assert.equal(b.body.duplicate, true);
    const done = await settled(a.id!);
    assert.equal(JSON.parse(done.result.body).body, "once");
    const cli = await s.cli([
      "invoke",
      "echo",
      "--async",
      "-d",
      "{}",
      "--idempotency-key",
      "order-77",
      "--json",
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(JSON.parse(cli.stdout).invocationId, a.id);
  });

  test("records of async attempts carry trigger, event id, attempt, queue wait and end-to-end latency", async () => {
    const r = await asyncUrl("echo", "rec");
    await settled(r.id!);
    const recs = await until("the attempt's record", async () => {
      const l = (await s.api("GET", "/api/v1/functions/echo/invocations?limit=200")).body.invocations;
      const mine = l.filter((x: any) => x.eventId === r.id);
      return mine.length ? mine : undefined;
    });
    assert.equal(recs.length, 1);
    assert.equal(recs[0].trigger, "async");
    assert.equal(recs[0].attempt, 1);
    assert.ok(recs[0].queueWaitMs >= 0);
    assert.ok(recs[0].e2eMs >= recs[0].durationMs);
    assert.ok(recs[0].billedMs >= 1, "async attempts are billed like HTTP ones");
  });

  test("nimbus invoke --async, nimbus invocations and nimbus invocation show the state", async () => {
    const inv = await s.cli(["invoke", "lam", "--async", "-d", '{"n":1}', "--json"]);
    assert.equal(inv.code, 0, inv.stderr);
    const id = JSON.parse(inv.stdout).invocationId;
    await settled(id);
    const one = await s.cli(["invocation", id]);
    assert.match(one.stdout, /succeeded/);
    const list = await s.cli(["invocations", "lam", "--json"]);
    assert.ok(
      JSON.parse(list.stdout).invocations.some((i: any) => i.invocationId === id && i.state === "succeeded"),
    );
    const human = await s.cli(["invocations", "lam"]);
    assert.match(human.stdout, /STATE/);
  });

  test("bounds: a payload over 256 KB → 413; a full queue → 429 NIMBUS_QUEUE_FULL with Retry-After", async () => {
    const big = await asyncUrl("echo", "x".repeat(256 * 1024 + 1));
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, "NIMBUS_PAYLOAD_TOO_LARGE");
    // maxQueuedEvents 2: one running (sleeping), one waiting, the next refused.
    const codes: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${s.url}/fn/slow?sleep=1500`, {
        method: "POST",
        headers: { "x-nimbus-invocation-type": "event" },
      });
      codes.push(res.status);
      const b = (await res.json()) as any;
      if (res.status === 429) {
        assert.equal(b.error.code, "NIMBUS_QUEUE_FULL");
        assert.equal(res.headers.get("retry-after"), "1");
      } else ids.push(b.invocationId);
    }
    assert.ok(codes.includes(429), `expected a 429 among ${codes}`);
    for (const id of ids) assert.equal((await settled(id)).state, "succeeded");
  });

  test("CloudEvents over HTTP: binary and structured modes reach the function unchanged, sync and async", async () => {
    const binary = {
      "ce-specversion": "1.0",
      "ce-id": "evt-1",
      "ce-source": "/sensors/7",
      "ce-type": "com.example.reading",
      "content-type": "application/json",
    };
    const sync = (await (
      await fetch(`${s.url}/fn/echo`, { method: "POST", headers: binary, body: '{"t":21}' })
    ).json()) as any;
    assert.equal(sync.headers["ce-type"], "com.example.reading");
    assert.equal(sync.headers["ce-id"], "evt-1");
    assert.equal(sync.body, '{"t":21}');
    const structured = JSON.stringify({
      specversion: "1.0",
      id: "evt-2",
      source: "/s",
      type: "t",
      data: { t: 22 },
    });
    const a = await asyncUrl("echo", structured, { "content-type": "application/cloudevents+json" });
    const b = await asyncUrl("echo", '{"t":23}', binary);
    const da = JSON.parse((await settled(a.id!)).result.body);
    const db = JSON.parse((await settled(b.id!)).result.body);
    assert.equal(da.headers["content-type"], "application/cloudevents+json");
    assert.deepEqual(JSON.parse(da.body), JSON.parse(structured));
    assert.equal(db.headers["ce-source"], "/sensors/7");
    assert.equal(db.body, '{"t":23}');
  });

  test("unknown invocation id → 404 NIMBUS_INVOCATION_NOT_FOUND", async () => {
    const r = await s.api("GET", "/api/v1/invocations/nope");
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, "NIMBUS_INVOCATION_NOT_FOUND");
  });

  test("destinations: outcomes go to another function as CloudEvents 1.0", async () => {
    const ok = await s.api("POST", "/api/v1/functions/reports/invocations", { good: 1 });
    const bad = await asyncUrl("reports/?fail=1", "bad");
    await settled(ok.body.invocationId);
    await settled(bad.id!);
    const reports = await until("two reports at the sink", async () => {
      const l = (await s.api("GET", "/api/v1/functions/sink/async-invocations")).body.invocations;
      const done = l.filter((i: any) => i.state === "succeeded" && i.trigger === "destination");
      return done.length >= 2 ? done : undefined;
    });
    const events = reports.map((r: any) => JSON.parse(JSON.parse(r.result.body).body));
    const types = events.map((e: any) => e.type).sort();
    assert.deepEqual(types, ["dev.nimbus.invocation.failed", "dev.nimbus.invocation.succeeded"]);
    for (const e of events) {
      assert.equal(e.specversion, "1.0");
      assert.equal(e.source, "nimbus://default/functions/reports");
    }
    const failed = events.find((e: any) => e.type.endsWith("failed"));
    assert.equal(failed.subject, bad.id);
    assert.match(failed.data.error, /NIMBUS_FUNCTION_ERROR/);
  });

  test("attack: a destination webhook aimed at the host's loopback → refused, nothing is sent", async () => {
    let hits = 0;
    const listener = createServer((_q, r) => {
      hits++;
      r.end();
    });
    await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
    const port = (listener.address() as AddressInfo).port;
    try {
      const d = await s.deploy("hook", "events/echo-async.ts", {
        retries: 0,
        destinations: { onSuccess: `http://127.0.0.1:${port}/steal` },
      });
      assert.ok(d.status < 300, JSON.stringify(d.body));
      const r = await s.api("POST", "/api/v1/functions/hook/invocations", {});
      const done = await settled(r.body.invocationId);
      assert.equal(done.state, "succeeded", JSON.stringify(done));
      await sleep(1500); // the three tries with backoff would be over by now
      assert.equal(hits, 0);
      assert.match(s.stdout(), /destination http:\/\/127\.0\.0\.1:\d+\/steal of hook failed: .*refused/);
      // The neighbour keeps answering.
      assert.equal((await fetch(`${s.url}/fn/echo`)).status, 200);
    } finally {
      listener.close();
    }
  });
});
