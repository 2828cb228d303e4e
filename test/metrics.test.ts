import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DURATION_BUCKETS } from "../src/observability/metrics.ts";
import { cleanup, startTestServer, type TestServer } from "./helpers.ts";
import { parseExposition, value } from "./prometheus.ts";

async function scrape(url: string, key?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}/metrics`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  return { status: res.status, text: await res.text() };
}

describe("GET /metrics", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    const r = await s.deploy("echo", "echo.ts");
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("counts known traffic exactly: invocations by status class, histograms, billing, cold starts, refusals", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${s.url}/fn/echo/ok`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${s.url}/fn/echo/x?status=418`);
      assert.equal(res.status, 418);
      await res.arrayBuffer();
    }
    const missing = await fetch(`${s.url}/fn/nope`);
    assert.equal(missing.status, 404);
    await missing.arrayBuffer();

    // Loopback, default auth: no key needed.
    const { status, text } = await scrape(s.url);
    assert.equal(status, 200);
    const m = parseExposition(text);
    const fn = { function: "echo", version: "1", trigger: "http" };
    assert.equal(value(m, "nimbus_invocations_total", { ...fn, status: "2xx" }), 3);
    assert.equal(value(m, "nimbus_invocations_total", { ...fn, status: "4xx" }), 2);
    assert.equal(value(m, "nimbus_cold_starts_total", { function: "echo", version: "1" }), 1);
    assert.equal(value(m, "nimbus_refusals_total", { code: "NIMBUS_FN_NOT_FOUND" }), 1);
    // The unknown function created no series of its own.
    assert.ok(!text.includes('function="nope"'));

    // Histograms and billing against the records the platform wrote for the same invocations.
    const recs = (await s.api("GET", "/api/v1/functions/echo/invocations?limit=50")).body.invocations as {
      durationMs: number;
      firstByteMs: number;
      billedMs: number;
      gbSeconds: number;
    }[];
    assert.equal(recs.length, 5);
    const by = { function: "echo", trigger: "http" };
    for (const le of DURATION_BUCKETS) {
      const want = recs.filter((r) => r.durationMs / 1000 <= le).length;
      assert.equal(
        value(m, "nimbus_invocation_duration_seconds_bucket", { ...by, le: String(le) }),
        want,
        `duration bucket le=${le}`,
      );
      const wantFb = recs.filter((r) => r.firstByteMs / 1000 <= le).length;
      assert.equal(
        value(m, "nimbus_invocation_first_byte_seconds_bucket", { ...by, le: String(le) }),
        wantFb,
        `first-byte bucket le=${le}`,
      );
    }
    assert.equal(value(m, "nimbus_invocation_duration_seconds_bucket", { ...by, le: "+Inf" }), 5);
    assert.equal(value(m, "nimbus_invocation_duration_seconds_count", by), 5);
    const billed = recs.reduce((a, r) => a + r.billedMs, 0);
    assert.equal(value(m, "nimbus_billed_milliseconds_total", { function: "echo" }), billed);
    const gbs = recs.reduce((a, r) => a + r.gbSeconds, 0);
    assert.ok(Math.abs(value(m, "nimbus_gb_seconds_total", { function: "echo" })! - gbs) < 1e-9);
    assert.ok((value(m, "nimbus_cpu_milliseconds_total", { function: "echo" }) ?? 0) > 0);

    // One instance started, each phase measured once; it is idle now.
    for (const phase of ["sandbox", "load", "total"]) {
      assert.equal(
        value(m, "nimbus_cold_start_duration_seconds_count", { executor: "process", phase }),
        1,
        `phase ${phase}`,
      );
    }
    assert.equal(value(m, "nimbus_instances", { function: "echo", state: "idle" }), 1);
    assert.equal(value(m, "nimbus_instances", { function: "echo", state: "busy" }), 0);
    // Process and event-loop figures are there.
    assert.ok(value(m, "nimbus_rss_bytes", { kind: "platform" })! > 10_000_000);
    // The warm process instance's runtime (a Node process, tens of MB) is counted: its pid
    // comes from the spawner, its sandbox's process tree is summed.
    const instanceRss = value(m, "nimbus_rss_bytes", { kind: "instance" })!;
    assert.ok(instanceRss > 10_000_000, `instance RSS ${instanceRss}`);
    assert.ok(value(m, "nimbus_event_loop_lag_seconds", { quantile: "0.99" })! >= 0);
    assert.equal(value(m, "nimbus_log_lines_dropped_total", {}), 0);
  });

  it("a second scrape adds exactly the new traffic", async () => {
    const before = parseExposition((await scrape(s.url)).text);
    const res = await fetch(`${s.url}/fn/echo/ok`);
    await res.arrayBuffer();
    const after = parseExposition((await scrape(s.url)).text);
    const k = { function: "echo", version: "1", trigger: "http", status: "2xx" };
    assert.equal(
      value(after, "nimbus_invocations_total", k),
      value(before, "nimbus_invocations_total", k)! + 1,
    );
    assert.equal(
      value(after, "nimbus_cold_starts_total", { function: "echo", version: "1" }),
      1,
      "a warm invocation is no cold start",
    );
  });

  it("the OpenAPI document describes /metrics", async () => {
    const doc = (await s.api("GET", "/api/v1/openapi.json")).body;
    assert.ok(doc.paths["/metrics"]?.get, "GET /metrics documented");
  });
});

describe("GET /metrics with --metrics-auth key", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ args: ["--metrics-auth", "key"] });
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("asks loopback callers for a key too; the admin key reads it", async () => {
    const anon = await scrape(s.url);
    assert.equal(anon.status, 401);
    assert.equal(JSON.parse(anon.text).error.code, "NIMBUS_UNAUTHORIZED");
    const wrong = await scrape(s.url, "not-a-key");
    assert.equal(wrong.status, 401);
    const ok = await scrape(s.url, s.adminKey);
    assert.equal(ok.status, 200);
    assert.match(ok.text, /# TYPE nimbus_invocations_total counter/);
  });

  it("refuses an unknown --metrics-auth value with a clear message", async () => {
    const r = await s.cli(["serve", "--port", "0", "--metrics-auth", "open"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /metrics-auth/);
  });
});
