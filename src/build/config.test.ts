import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ISOLATE_DEFAULT_CONCURRENCY, validateConfig } from "./config.ts";

describe("config defaults per executor", () => {
  it("a process function serves one request at a time by default, as on Lambda", () => {
    assert.equal(validateConfig(undefined).concurrency, 1);
    assert.equal(validateConfig({}).concurrency, 1);
    assert.equal(validateConfig({ executor: "process" }).concurrency, 1);
  });

  it("an isolate function serves many at once by default, as a Worker", () => {
    assert.equal(ISOLATE_DEFAULT_CONCURRENCY, 100);
    assert.equal(validateConfig({ executor: "isolate" }).concurrency, ISOLATE_DEFAULT_CONCURRENCY);
  });

  it("an explicit concurrency wins on either executor", () => {
    assert.equal(validateConfig({ executor: "isolate", concurrency: 1 }).concurrency, 1);
    assert.equal(validateConfig({ executor: "process", concurrency: 8 }).concurrency, 8);
  });
});
