import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvocationLogBudget, LogQuota } from "./log-quota.ts";

describe("log quota", () => {
  it("an invocation keeps its first lines up to its quota and counts the rest", () => {
    const q = new LogQuota({ invocationLines: 3, functionBurstLines: 1000 });
    const b = new InvocationLogBudget();
    const verdicts = Array.from({ length: 5 }, () => q.admit("t/f", 10, 0, b));
    assert.deepEqual(verdicts, ["ok", "ok", "ok", "invocation", "invocation"]);
    assert.equal(b.dropped, 2);
    assert.match(q.marker(b.dropped, b.reason), /^\[nimbus\] 2 log lines dropped \(quota per invocation/);
  });

  it("an invocation's characters are capped too", () => {
    const q = new LogQuota({ invocationBytes: 100 });
    const b = new InvocationLogBudget();
    assert.equal(q.admit("t/f", 60, 0, b), "ok");
    assert.equal(q.admit("t/f", 60, 0, b), "invocation");
    assert.equal(q.admit("t/f", 40, 0, b), "ok");
  });

  it("a function's lines are rate-limited across invocations, and the bucket refills with time", () => {
    const q = new LogQuota({
      functionLinesPerSecond: 10,
      functionBurstLines: 20,
      functionBytesPerSecond: 1e9,
      functionBurstBytes: 1e9,
    });
    let ok = 0;
    for (let i = 0; i < 100; i++) if (q.admit("t/f", 1, 0, new InvocationLogBudget()) === "ok") ok++;
    assert.equal(ok, 20, "the burst");
    // Another function has its own bucket.
    assert.equal(q.admit("t/g", 1, 0), "ok");
    // One second later, ten more.
    ok = 0;
    for (let i = 0; i < 100; i++) if (q.admit("t/f", 1, 1000) === "ok") ok++;
    assert.equal(ok, 10);
    assert.equal(q.takeDropped("t/f"), 90, "drops outside invocations are counted per function");
    assert.equal(q.takeDropped("t/f"), 0);
  });

  it("a function's characters per second are capped", () => {
    const q = new LogQuota({ functionBytesPerSecond: 100, functionBurstBytes: 1000 });
    assert.equal(q.admit("t/f", 900, 0), "ok");
    assert.equal(q.admit("t/f", 200, 0), "function");
    assert.equal(q.admit("t/f", 200, 1000), "ok");
  });

  it("cuts a long line on the platform side, saying so", () => {
    const q = new LogQuota({ maxLineChars: 10 });
    assert.equal(q.cut("short"), "short");
    assert.equal(q.cut("x".repeat(25)), `${"x".repeat(10)}… [cut: 25 characters]`);
  });

  it("forgets quiet functions", () => {
    const q = new LogQuota({ functionLinesPerSecond: 1000, functionBurstLines: 1000 });
    q.admit("t/f", 1, 0);
    q.sweep(10_000);
    assert.equal((q as unknown as { buckets: Map<string, unknown> }).buckets.size, 0);
  });
});
