import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ResponseFlow } from "./flow.ts";

describe("response flow control (platform side)", () => {
  it("an instance within its window is fine; one byte past it is a violation", () => {
    const flow = new ResponseFlow(() => {}, 1000);
    assert.equal(flow.received(600), true);
    assert.equal(flow.received(400), true);
    assert.equal(flow.received(1), false);
  });

  it("credit goes back in steps once bytes are consumed, and all of it when nothing else is in flight", () => {
    const grants: number[] = [];
    const flow = new ResponseFlow((n) => grants.push(n), 4 * 1024 * 1024);
    const small = Array.from({ length: 4 }, () => {
      flow.received(1000);
      return flow.consumer(1000);
    });
    // Three of four consumed while more is in flight: held back (below the grant step).
    for (const c of small.slice(0, 3)) c();
    assert.deepEqual(grants, []);
    // The last one: nothing is in flight any more, so everything goes back.
    small[3]!();
    assert.deepEqual(grants, [4000]);
    assert.equal(flow.inFlight, 0);
    // A big chunk is credited back at once; a consumer counts only once.
    flow.received(300 * 1024);
    const c = flow.consumer(300 * 1024);
    c();
    c();
    assert.deepEqual(grants, [4000, 300 * 1024]);
  });

  it("a closed flow grants nothing more", () => {
    const grants: number[] = [];
    const flow = new ResponseFlow((n) => grants.push(n), 1000);
    flow.received(10);
    const c = flow.consumer(10);
    flow.close();
    c();
    assert.deepEqual(grants, []);
  });
});
