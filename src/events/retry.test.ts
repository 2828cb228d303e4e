import assert from "node:assert/strict";
import { test } from "node:test";
import { decideRetry, isExpired } from "./retry.ts";

const T0 = 1_800_000_000_000;
const base = { retries: 2, enqueuedAt: T0, maxEventAgeMs: 3_600_000, baseMs: 1000, capMs: 300_000 };

test("default two retries: attempts 1 and 2 retry, the third failure dead-letters", () => {
  assert.equal(decideRetry({ ...base, attempts: 1, now: T0, random: 0.5 }).action, "retry");
  assert.equal(decideRetry({ ...base, attempts: 2, now: T0 + 2000, random: 0.5 }).action, "retry");
  assert.deepEqual(decideRetry({ ...base, attempts: 3, now: T0 + 5000, random: 0.5 }), {
    action: "dead",
    reason: "failed",
  });
});

test("retries: 0 dead-letters after the first failure", () => {
  assert.deepEqual(decideRetry({ ...base, retries: 0, attempts: 1, now: T0, random: 0 }), {
    action: "dead",
    reason: "failed",
  });
});

test("delays double per attempt, jitter keeps each within [half, full] of nominal", () => {
  const d = (attempts: number, random: number) => {
    const r = decideRetry({ ...base, retries: 10, attempts, now: T0, random });
    assert.equal(r.action, "retry");
    return (r as { delayMs: number }).delayMs;
  };
  assert.equal(d(1, 0), 500);
  assert.equal(d(1, 0.999999), 1000);
  assert.equal(d(2, 0), 1000);
  assert.equal(d(3, 0.5), 3000);
  assert.equal(d(10, 0), 150_000, "capped at 300 s nominal");
  assert.equal(d(10, 1), 300_000);
});

test("an event past maxEventAge expires instead of retrying, also when the retry would land past it", () => {
  assert.deepEqual(decideRetry({ ...base, attempts: 1, now: T0 + 3_600_000, random: 0 }), {
    action: "dead",
    reason: "expired",
  });
  assert.deepEqual(decideRetry({ ...base, attempts: 1, now: T0 + 3_599_900, random: 0 }), {
    action: "dead",
    reason: "expired",
  });
  assert.equal(isExpired(T0, 1000, T0 + 999), false);
  assert.equal(isExpired(T0, 1000, T0 + 1000), true);
});

test("a huge attempt count neither overflows nor exceeds the cap", () => {
  const r = decideRetry({ ...base, retries: 1e9, attempts: 5000, now: T0, random: 1 });
  assert.deepEqual(r, { action: "retry", delayMs: 300_000 });
});
