import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, FIXTURES, sleep, startTestServer, type TestServer } from "./helpers.ts";

async function get(s: TestServer, path: string): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(`${s.url}${path}`);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

async function logsOf(s: TestServer, fn: string, invocation: string): Promise<string> {
  const r = await s.api("GET", `/api/v1/functions/${fn}/logs?invocation=${invocation}`);
  return r.body.lines.map((l: any) => `${l.level} ${l.msg}`).join("\n");
}

describe("limits and failures: each is contained, the next request is healthy", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    // A generous timeout so that a loaded machine does not turn other failures into timeouts;
    // the timeout case uses "short", which keeps the 2 s from the inline config.
    const r = await s.deploy("beh", "behaviours.ts", { timeout: "15s" });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await s.deploy("short", "behaviours.ts")).status, 200);
    const other = await s.deploy("other", "echo.ts");
    assert.equal(other.status, 200);
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  async function healthy(): Promise<void> {
    const ok = await get(s, "/fn/beh/ok");
    assert.equal(ok.status, 200);
    assert.match(ok.body, /^ok \w+$/);
    const other = await fetch(`${s.url}/fn/other`, { method: "POST", body: "fine" });
    assert.equal(await other.text(), "fine");
  }

  it("a thrown error is a 500 with a generic message; the log holds the stack at the TypeScript line", async () => {
    const r = await get(s, "/fn/beh/throw");
    assert.equal(r.status, 500);
    const body = JSON.parse(r.body);
    assert.equal(body.error.code, "NIMBUS_FUNCTION_ERROR");
    assert.doesNotMatch(r.body, /boom from the function/, "the caller must not see the function's internals");
    const id = r.headers.get("x-nimbus-invocation-id") ?? body.error.details.invocationId;
    const logs = await logsOf(s, "beh", id);
    assert.match(logs, /info about to throw/);
    assert.match(logs, /boom from the function/);
    const line =
      readFileSync(join(FIXTURES, "behaviours.ts"), "utf8")
        .split("\n")
        .findIndex((l) => l.includes('throw new Error("boom')) + 1;
    assert.match(
      logs,
      new RegExp(`behaviours\\.ts:${line}:\\d+`),
      `stack must be source-mapped to line ${line}:\n${logs}`,
    );
    await healthy();
  });

  it("a timeout kills the instance and answers 504", async () => {
    const t0 = Date.now();
    const r = await get(s, "/fn/short/timeout");
    assert.equal(r.status, 504);
    assert.equal(JSON.parse(r.body).error.code, "NIMBUS_TIMEOUT");
    assert.ok(Date.now() - t0 >= 1900, "the 2 s timeout from the inline config applies");
    await healthy();
  });

  it("with concurrency > 1, a timeout's neighbours on the same instance fail as collateral, not as timeouts", async () => {
    assert.equal(
      (await s.deploy("shared", "behaviours.ts", { concurrency: 4, maxInstances: 1, timeout: "2s" })).status,
      200,
    );
    await get(s, "/fn/shared/ok");
    const [timedOut, neighbour] = await Promise.all([
      get(s, "/fn/shared/timeout"),
      get(s, "/fn/shared/sleep?ms=5000"),
    ]);
    assert.equal(timedOut.status, 504);
    assert.equal(JSON.parse(timedOut.body).error.code, "NIMBUS_TIMEOUT");
    assert.equal(neighbour.status, 502);
    const err = JSON.parse(neighbour.body).error;
    assert.equal(err.code, "NIMBUS_INSTANCE_CRASHED");
    assert.match(err.message, /another invocation on it failed \(NIMBUS_TIMEOUT\)/);
    assert.equal((await get(s, "/fn/shared/ok")).status, 200);
  });

  it("exceeding memory kills the instance and answers 502 naming the reason", async () => {
    const r = await get(s, "/fn/beh/memory");
    assert.equal(r.status, 502);
    const body = JSON.parse(r.body);
    assert.equal(body.error.code, "NIMBUS_MEMORY_LIMIT");
    assert.match(body.error.message, /memory limit of 128 MB/);
    await healthy();
  });

  it("process.exit answers 502 and the next request gets a fresh instance", async () => {
    const before1 = await get(s, "/fn/beh/ok");
    const r = await get(s, "/fn/beh/exit");
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).error.code, "NIMBUS_INSTANCE_CRASHED");
    assert.match(JSON.parse(r.body).error.message, /exit code 3/);
    const after1 = await get(s, "/fn/beh/ok");
    assert.equal(after1.status, 200);
    assert.notEqual(after1.body, before1.body, "a new process serves after the exit");
  });

  it("an uncaught exception in a callback crashes the instance: 502, then healthy", async () => {
    const r = await get(s, "/fn/beh/crash");
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).error.code, "NIMBUS_INSTANCE_CRASHED");
    await healthy();
  });

  it("returning something that is not a Response is a 502 bad response", async () => {
    const r = await get(s, "/fn/beh/bad");
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).error.code, "NIMBUS_BAD_RESPONSE");
    await healthy();
  });

  it("a 20 MB response and a 1 MB log line pass through (chunked, log cut at 256 KB)", async () => {
    const res = await fetch(`${s.url}/fn/beh/big?mb=20`);
    assert.equal(res.status, 200);
    const body = new Uint8Array(await res.arrayBuffer());
    assert.equal(body.length, 20 * 1024 * 1024);
    assert.ok(body.every((b) => b === 7));
    const logs = await logsOf(s, "beh", res.headers.get("x-nimbus-invocation-id")!);
    assert.match(logs, /\[cut: 1048576 characters\]/);
    assert.ok(logs.length < 300 * 1024);
    await healthy();
  });

  it("a streamed response reaches the client chunk by chunk", async () => {
    const res = await fetch(`${s.url}/fn/beh/stream?n=3&gap=300`);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const reader = res.body!.getReader();
    const arrivals: number[] = [];
    const t0 = Date.now();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      arrivals.push(Date.now() - t0);
      text += new TextDecoder().decode(value);
    }
    assert.equal(text.match(/data: \d/g)?.length, 3);
    assert.ok(arrivals.length >= 2, "more than one chunk must arrive");
    assert.ok(
      arrivals[0]! < 250,
      `the first event must arrive before the stream ends (at ${arrivals[0]} ms)`,
    );
  });

  it("ctx.waitUntil work runs on after the response, and its logs are kept", async () => {
    const t0 = Date.now();
    const r = await get(s, "/fn/beh/waituntil?ms=600");
    assert.equal(r.body, "early");
    assert.ok(Date.now() - t0 < 550, "the response does not wait for the background work");
    const id = r.headers.get("x-nimbus-invocation-id")!;
    let logs = "";
    for (let i = 0; i < 30 && !logs.includes("background work done"); i++) {
      await new Promise((res) => setTimeout(res, 100));
      logs = await logsOf(s, "beh", id);
    }
    assert.match(logs, /background work done/);
  });

  it("requests beyond one instance's concurrency start more instances, up to maxInstances", async () => {
    const rs = await Promise.all(Array.from({ length: 4 }, () => get(s, "/fn/beh/sleep?ms=1500")));
    for (const r of rs) assert.equal(r.status, 200);
    // Each waiting request started an instance (a fresh spawn on a loaded machine may lose the
    // race to a freed instance, so count instances, not distinct responders).
    const info = (await s.api("GET", "/api/v1/functions/beh")).body;
    assert.equal(info.instances.idle + info.instances.busy, 4, JSON.stringify(info.instances));
    assert.ok(new Set(rs.map((r) => r.body)).size >= 2);
  });
});

describe("throttling, queueing and scale to zero", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("beyond maxInstances requests queue; past the queue they get 429 with Retry-After", async () => {
    const r = await s.deploy("tight", "behaviours.ts", { maxInstances: 1, maxQueue: 2 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const results = await Promise.all(Array.from({ length: 6 }, () => get(s, "/fn/tight/sleep?ms=400")));
    const ok = results.filter((x) => x.status === 200);
    const throttled = results.filter((x) => x.status === 429);
    assert.equal(ok.length + throttled.length, 6);
    assert.ok(ok.length >= 3, `one running + two queued succeed, got ${ok.length}`);
    assert.ok(throttled.length >= 1, "the rest are throttled");
    for (const t of throttled) {
      assert.equal(t.headers.get("retry-after"), "1");
      assert.equal(JSON.parse(t.body).error.code, "NIMBUS_THROTTLED");
    }
    assert.equal(new Set(ok.map((x) => x.body)).size, 1, "all served by the single instance");
    // Refused requests are recorded but not billed.
    const usage = (await s.api("GET", "/api/v1/usage")).body.functions.find((f: any) => f.fn === "tight");
    assert.equal(usage.requests, ok.length);
    assert.equal(usage.refused, throttled.length);
  });

  it("idle instances stop after the idle window; the next request is a cold start", async () => {
    const r = await s.deploy("idle", "behaviours.ts", { idleTimeout: "1s" });
    assert.equal(r.status, 200);
    const first = await get(s, "/fn/idle/ok");
    assert.equal(first.headers.get("x-nimbus-cold-start"), "1");
    const warm = await get(s, "/fn/idle/ok");
    assert.equal(warm.headers.get("x-nimbus-cold-start"), "0");
    assert.equal(warm.body, first.body);
    let info: any;
    for (let i = 0; i < 40; i++) {
      await sleep(150);
      info = (await s.api("GET", "/api/v1/functions/idle")).body;
      if (info.instances.idle + info.instances.busy === 0) break;
    }
    assert.equal(info.instances.idle + info.instances.busy, 0, "scaled to zero");
    const cold = await get(s, "/fn/idle/ok");
    assert.equal(cold.status, 200);
    assert.equal(cold.headers.get("x-nimbus-cold-start"), "1");
    assert.notEqual(cold.body, first.body, "a new process");
  });

  it("waitUntil work that never settles keeps an instance alive only until the timeout", async () => {
    const r = await s.deploy("bg", "behaviours.ts", { idleTimeout: "1s", timeout: "2s" });
    assert.equal(r.status, 200);
    assert.equal((await get(s, "/fn/bg/waituntil-forever")).body, "early");
    await sleep(1500);
    let info = (await s.api("GET", "/api/v1/functions/bg")).body;
    assert.equal(
      info.instances.idle + info.instances.busy,
      1,
      "kept alive while its background work may run",
    );
    for (let i = 0; i < 40; i++) {
      await sleep(150);
      info = (await s.api("GET", "/api/v1/functions/bg")).body;
      if (info.instances.idle + info.instances.busy === 0) break;
    }
    assert.equal(
      info.instances.idle + info.instances.busy,
      0,
      "reaped after the timeout and the idle window",
    );
  });

  it("minInstances keeps instances warm with the module loaded; their first request is warm", async () => {
    const r = await s.deploy("warm", "behaviours.ts", { minInstances: 2, idleTimeout: "1s" });
    assert.equal(r.status, 200);
    let info: any;
    for (let i = 0; i < 50; i++) {
      info = (await s.api("GET", "/api/v1/functions/warm")).body;
      if (info.instances.idle === 2) break;
      await sleep(100);
    }
    assert.equal(info.instances.idle, 2);
    await sleep(1500);
    info = (await s.api("GET", "/api/v1/functions/warm")).body;
    assert.equal(info.instances.idle, 2, "min instances are not reaped");
    const first = await get(s, "/fn/warm/ok");
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-nimbus-cold-start"), "0");
  });
});
