/** Pure parts of named queues: the per-message decision and the config. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { validateQueueBindings } from "./config.ts";
import { decideBatch } from "./outcome.ts";

const out = (ok: boolean, body: unknown, status = ok ? 200 : 500) => {
  const b = Buffer.from(body === undefined ? "" : JSON.stringify(body));
  return { ok, status, body: b, bodyBytes: b.length };
};

test("decideBatch: a runtime outcome retries only ids of the batch, with their delays", () => {
  const d = decideBatch(
    out(true, { nimbusQueueOutcome: { retry: [{ id: "a", delaySeconds: 5 }, { id: "zz" }, { id: "b" }] } }),
    ["a", "b", "c"],
  );
  assert.deepEqual(
    [...d.retry],
    [
      ["a", 5000],
      ["b", undefined],
    ],
  );
});

test("decideBatch: Lambda batchItemFailures; an unknown identifier fails the batch; no answer acks all", () => {
  assert.deepEqual(
    [...decideBatch(out(true, { batchItemFailures: [{ itemIdentifier: "b" }] }), ["a", "b"]).retry.keys()],
    ["b"],
  );
  assert.equal(
    decideBatch(out(true, { batchItemFailures: [{ itemIdentifier: "x" }] }), ["a", "b"]).retry.size,
    2,
  );
  assert.equal(decideBatch(out(true, undefined), ["a", "b"]).retry.size, 0);
});

test("decideBatch: a failed invocation without an outcome retries everything", () => {
  const d = decideBatch(
    { ...out(false, undefined, 502), error: { code: "NIMBUS_INSTANCE_CRASHED", message: "gone" } },
    ["a", "b"],
  );
  assert.equal(d.retry.size, 2);
  assert.match(d.why, /NIMBUS_INSTANCE_CRASHED/);
});

test("validateQueueBindings: defaults, and clear errors", () => {
  const c = validateQueueBindings({ producers: { JOBS: "jobs" }, consumers: [{ queue: "jobs" }] });
  assert.deepEqual(c.consumers[0], { queue: "jobs", batchSize: 10, maxWaitMs: 1000, concurrency: 1 });
  assert.throws(() => validateQueueBindings({ producers: { jobs: "jobs" } }), /binding name/);
  assert.throws(() => validateQueueBindings({ consumers: [{ queue: "jobs", batchSize: 101 }] }), /1 to 100/);
  assert.throws(
    () => validateQueueBindings({ consumers: [{ queue: "jobs", deadLetterQueue: "jobs" }] }),
    /another queue/,
  );
  assert.throws(() => validateQueueBindings({ consumers: [{ queue: "jobs", nope: 1 }] }), /unknown field/);
});
