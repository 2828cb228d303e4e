import assert from "node:assert/strict";
import { test } from "node:test";
import { functionQueue, parseFunctionQueue, stateOf } from "./async.ts";
import { validateEventConfig } from "./config.ts";
import { outcomeEvent } from "./destinations.ts";
import { isAsyncCall } from "./http.ts";

test("state mapping: queued, retrying, running, succeeded, dead-lettered, expired", () => {
  assert.equal(stateOf({ state: "ready", attempts: 0, deadReason: null }), "queued");
  assert.equal(stateOf({ state: "ready", attempts: 1, deadReason: null }), "retrying");
  assert.equal(stateOf({ state: "leased", attempts: 1, deadReason: null }), "running");
  assert.equal(stateOf({ state: "succeeded", attempts: 1, deadReason: null }), "succeeded");
  assert.equal(stateOf({ state: "dead", attempts: 3, deadReason: "failed" }), "dead-lettered");
  assert.equal(stateOf({ state: "dead", attempts: 1, deadReason: "expired" }), "expired");
});

test("function queue names round-trip; other names are not function queues", () => {
  assert.deepEqual(parseFunctionQueue(functionQueue("default", "my-fn")), { tenant: "default", fn: "my-fn" });
  assert.equal(parseFunctionQueue("q/default/jobs"), undefined);
  assert.equal(parseFunctionQueue("fn/default/../x"), undefined);
});

test("async switch: x-nimbus-invocation-type: event and X-Amz-Invocation-Type: Event, nothing else", () => {
  assert.equal(isAsyncCall([["x-nimbus-invocation-type", "event"]]), true);
  assert.equal(isAsyncCall([["x-amz-invocation-type", "Event"]]), true);
  assert.equal(isAsyncCall([["x-amz-invocation-type", "RequestResponse"]]), false);
  assert.equal(isAsyncCall([["x-other", "event"]]), false);
});

test("outcome reports are CloudEvents 1.0 naming the invocation", () => {
  const e = outcomeEvent(
    { tenant: "default", fn: "f" },
    { id: "inv-1", attempts: 3, enqueuedAt: 0 },
    "failed",
    1000,
    "boom",
  );
  assert.equal(e.specversion, "1.0");
  assert.equal(e.type, "dev.nimbus.invocation.failed");
  assert.equal(e.source, "nimbus://default/functions/f");
  assert.equal(e.subject, "inv-1");
  assert.equal(e.time, "1970-01-01T00:00:01.000Z");
  assert.deepEqual(e.data, {
    invocationId: "inv-1",
    function: "f",
    outcome: "failed",
    attempts: 3,
    enqueuedAt: "1970-01-01T00:00:00.000Z",
    error: "boom",
  });
});

test("event config: bounds and destinations are validated with the field named", () => {
  assert.deepEqual(
    validateEventConfig({ retries: 0, maxEventAge: "1h", destinations: { onFailure: "fn:alerts" } }),
    {
      retries: 0,
      maxEventAgeMs: 3_600_000,
      destinations: { onFailure: "fn:alerts" },
    },
  );
  assert.throws(() => validateEventConfig({ retries: 11 }), /config\.retries/);
  assert.throws(() => validateEventConfig({ maxEventAge: "7h" }), /config\.maxEventAge/);
  assert.throws(
    () => validateEventConfig({ destinations: { onSuccess: "ftp://x" } }),
    /destinations\.onSuccess/,
  );
  assert.throws(() => validateEventConfig({ destinations: { other: "fn:x" } }), /destinations\.other/);
  assert.throws(() => validateEventConfig({ maxQueuedEvents: 0 }), /maxQueuedEvents/);
});
