import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { cleanup, sleep, startTestServer, type TestServer } from "./helpers.ts";

async function get(s: TestServer, path: string): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(`${s.url}${path}`);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

async function withServer(args: string[], fn: (s: TestServer) => Promise<void>): Promise<void> {
  const s = await startTestServer({ args });
  try {
    await fn(s);
  } finally {
    await s.stop();
    cleanup(s.dataDir);
  }
}

describe("concurrency limits, memory budget, buffering, connections, shutdown", () => {
  it("reserved concurrency caps a function; past its queue the 429 names that limit", async () => {
    await withServer([], async (s) => {
      assert.equal(
        (await s.deploy("res", "behaviours.ts", { reservedConcurrency: 1, maxQueue: 0 })).status,
        200,
      );
      const rs = await Promise.all([
        get(s, "/fn/res/sleep?ms=800"),
        sleep(300).then(() => get(s, "/fn/res/ok")),
      ]);
      assert.equal(rs[0].status, 200);
      assert.equal(rs[1].status, 429);
      assert.equal(rs[1].headers.get("retry-after"), "1");
      assert.equal(JSON.parse(rs[1].body).error.code, "NIMBUS_RESERVED_CONCURRENCY_EXCEEDED");
    });
  });

  it("the machine-wide limit is shared by unreserved functions; a reserved function keeps its share", async () => {
    await withServer(["--max-concurrency", "3"], async (s) => {
      assert.equal((await s.deploy("a", "behaviours.ts", { maxQueue: 0 })).status, 200);
      assert.equal((await s.deploy("b", "behaviours.ts", { maxQueue: 0 })).status, 200);
      assert.equal(
        (await s.deploy("vip", "behaviours.ts", { reservedConcurrency: 1, maxQueue: 0 })).status,
        200,
      );
      // Warm one instance of each so the test measures limits, not start-up.
      await Promise.all([get(s, "/fn/a/ok"), get(s, "/fn/b/ok"), get(s, "/fn/vip/ok")]);
      // 3 - 1 reserved = 2 unreserved slots.
      const slow = [get(s, "/fn/a/sleep?ms=1200"), get(s, "/fn/b/sleep?ms=1200")];
      await sleep(400);
      const over = await get(s, "/fn/a/ok");
      assert.equal(over.status, 429);
      assert.equal(JSON.parse(over.body).error.code, "NIMBUS_MACHINE_CONCURRENCY_EXCEEDED");
      const vip = await get(s, "/fn/vip/ok");
      assert.equal(vip.status, 200, "the reserved function is not starved");
      for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
      const status = (await s.api("GET", "/api/v1/status")).body;
      assert.equal(status.machine.maxConcurrency, 3);
    });
  });

  it("when memory is short, idle instances of other functions are evicted least-recently-used first", async () => {
    await withServer(["--memory-budget", "256", "--queue-wait", "1500"], async (s) => {
      for (const n of ["m1", "m2", "m3"]) {
        assert.equal((await s.deploy(n, "behaviours.ts", { timeout: "10s" })).status, 200);
      }
      assert.equal((await get(s, "/fn/m1/ok")).status, 200);
      await sleep(50);
      assert.equal((await get(s, "/fn/m2/ok")).status, 200);
      // Budget 256 MB = two 128 MB instances: m3 needs room, m1 was used least recently.
      const r3 = await get(s, "/fn/m3/ok");
      assert.equal(r3.status, 200);
      const count = async (n: string) => {
        const i = (await s.api("GET", `/api/v1/functions/${n}`)).body.instances;
        return i.idle + i.busy + i.starting;
      };
      assert.equal(await count("m1"), 0, "m1 (LRU) was evicted");
      assert.equal(await count("m2"), 1, "m2 was kept");
      assert.equal(await count("m3"), 1);
      const status = (await s.api("GET", "/api/v1/status")).body;
      assert.ok(status.machine.memoryUsedMB <= 256);
      // With every instance busy nothing can be evicted: the request waits, then gets 429.
      const busy = [get(s, "/fn/m2/sleep?ms=2500"), get(s, "/fn/m3/sleep?ms=2500")];
      await sleep(300);
      const refused = await get(s, "/fn/m1/ok");
      assert.equal(refused.status, 429);
      assert.equal(JSON.parse(refused.body).error.code, "NIMBUS_MACHINE_MEMORY_EXHAUSTED");
      for (const r of await Promise.all(busy)) assert.equal(r.status, 200);
    });
  });

  it("a burst at a function with no instance is buffered and all served, none dropped", async () => {
    await withServer([], async (s) => {
      assert.equal((await s.deploy("burst", "echo.ts", { maxInstances: 4 })).status, 200);
      const n = 300;
      const rs = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          fetch(`${s.url}/fn/burst`, { method: "POST", body: String(i) }).then(async (r) => ({
            status: r.status,
            body: await r.text(),
          })),
        ),
      );
      const failed = rs.filter((r) => r.status !== 200);
      assert.equal(failed.length, 0, `failed: ${JSON.stringify(failed.slice(0, 3))}`);
      assert.deepEqual(
        rs.map((r) => r.body),
        Array.from({ length: n }, (_, i) => String(i)),
      );
      const info = (await s.api("GET", "/api/v1/functions/burst")).body;
      const total = info.instances.idle + info.instances.busy + info.instances.starting;
      assert.ok(total <= 4, `never past maxInstances: ${total}`);
      assert.ok(total >= 2, `the pool scaled up: ${total}`);
    });
  });

  it("a slow-loris client that never finishes its headers is cut off", async () => {
    await withServer(["--headers-timeout", "1000"], async (s) => {
      const port = Number(new URL(s.url).port);
      const sock = connect(port, "127.0.0.1");
      await new Promise((r) => sock.once("connect", r));
      sock.write("GET /fn/x HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      const t0 = Date.now();
      let received = "";
      sock.on("data", (d) => {
        received += d;
      });
      const closed = new Promise<number>((r) => sock.once("close", () => r(Date.now() - t0)));
      const drip = setInterval(() => {
        if (!sock.destroyed) sock.write("X-Slow: a\r\n");
      }, 200);
      const ms = await Promise.race([closed, sleep(8000).then(() => -1)]);
      clearInterval(drip);
      sock.destroy();
      assert.notEqual(ms, -1, "the connection must be closed by the server");
      assert.ok(ms < 4000, `cut off after ${ms} ms`);
      assert.match(received, /408|^$/);
    });
  });

  it("SIGTERM stops accepting, finishes in-flight invocations, then exits", async () => {
    const s = await startTestServer();
    try {
      assert.equal((await s.deploy("drain", "behaviours.ts")).status, 200);
      await get(s, "/fn/drain/ok");
      const inflight = Array.from({ length: 3 }, () => get(s, "/fn/drain/sleep?ms=1500"));
      await sleep(400);
      const exited = s.stop("SIGTERM");
      await sleep(200);
      const refused = await fetch(`${s.url}/fn/drain/ok`).then(
        (r) => r.status,
        () => "refused",
      );
      assert.ok(refused === "refused" || refused === 503, `new requests are not accepted (${refused})`);
      for (const r of await Promise.all(inflight)) {
        assert.equal(r.status, 200);
        assert.match(r.body, /^slept/);
      }
      assert.equal(await exited, 0);
    } finally {
      await s.stop();
      cleanup(s.dataDir);
    }
  });
});
