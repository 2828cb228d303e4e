import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NimbusError } from "../errors.ts";
import {
  clampToLimits,
  DEFAULT_LIMITS,
  formatDuration,
  ISOLATE_DEFAULT_CONCURRENCY,
  type ServerLimits,
  validateConfig,
} from "./config.ts";

function refusal(raw: unknown, limits: ServerLimits = DEFAULT_LIMITS): NimbusError {
  try {
    validateConfig(raw, limits);
  } catch (err) {
    assert.ok(err instanceof NimbusError);
    return err;
  }
  assert.fail(`accepted ${JSON.stringify(raw)}`);
}

describe("server maximums", () => {
  it("refuses each field over its maximum, naming the maximum, the flag and the variable", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { idleTimeout: "1000h" },
        /config\.idleTimeout: 1000h .* maximum of 15m.*--max-idle-timeout.*NIMBUS_MAX_IDLE_TIMEOUT/,
      ],
      [
        { minInstances: 100, maxInstances: 100 },
        /config\.minInstances: 100 .* maximum of 10\b.*--max-min-instances/,
      ],
      [{ maxInstances: 101 }, /config\.maxInstances: 101 .* maximum of 100\b.*--max-max-instances/],
      [{ memory: 8192 }, /config\.memory: 8192 MB .* maximum of 4096 MB.*--max-memory/],
      [{ timeout: "16m" }, /config\.timeout: 16m .* maximum of 15m.*--max-timeout/],
      [{ cpu: DEFAULT_LIMITS.maxCpu + 1 }, /config\.cpu: .* cores .*--max-cpu/],
    ];
    for (const [raw, message] of cases) {
      const e = refusal(raw);
      assert.equal(e.code, "NIMBUS_CONFIG_OVER_LIMIT");
      assert.equal(e.status, 400);
      assert.match(e.message, message);
    }
  });

  it("a minInstances over the maximum is named as such, not as a conflict with maxInstances", () => {
    assert.equal(refusal({ minInstances: 100 }).code, "NIMBUS_CONFIG_OVER_LIMIT");
  });

  it("accepts values at the maximum, and more when the operator raises it", () => {
    const c = validateConfig({ idleTimeout: "15m", minInstances: 10, maxInstances: 100, memory: 4096 });
    assert.equal(c.idleTimeoutMs, 900_000);
    const raised = { ...DEFAULT_LIMITS, maxIdleTimeoutMs: 7_200_000, maxMinInstances: 50 };
    assert.equal(validateConfig({ idleTimeout: "1h" }, raised).idleTimeoutMs, 3_600_000);
    assert.equal(validateConfig({ minInstances: 50, maxInstances: 50 }, raised).minInstances, 50);
    assert.equal(refusal({ idleTimeout: "3h" }, raised).code, "NIMBUS_CONFIG_OVER_LIMIT");
  });

  it("cpu is a number of cores, at least 0.05", () => {
    assert.equal(validateConfig({ cpu: 0.5 }).cpu, 0.5);
    assert.equal(validateConfig({}).cpu, 1);
    assert.equal(refusal({ cpu: 0 }).code, "NIMBUS_BAD_CONFIG");
    assert.equal(refusal({ cpu: "2" }).code, "NIMBUS_BAD_CONFIG");
  });

  it("a stored config is held to lowered maximums; one within them is returned as is", () => {
    const old = validateConfig({ idleTimeout: "15m", minInstances: 10, maxInstances: 100 });
    assert.equal(clampToLimits(old, DEFAULT_LIMITS), old);
    const lower = { ...DEFAULT_LIMITS, maxIdleTimeoutMs: 60_000, maxMinInstances: 2, maxMaxInstances: 5 };
    const c = clampToLimits(old, lower);
    assert.equal(c.idleTimeoutMs, 60_000);
    assert.equal(c.minInstances, 2);
    assert.equal(c.maxInstances, 5);
    // A config stored before `cpu` existed gets the default.
    const { cpu: _cpu, ...legacy } = old;
    assert.equal(clampToLimits(legacy as typeof old, DEFAULT_LIMITS).cpu, 1);
  });

  it("formats durations as a config would say them", () => {
    assert.equal(formatDuration(900_000), "15m");
    assert.equal(formatDuration(7_200_000), "2h");
    assert.equal(formatDuration(1500), "1500ms");
    assert.equal(formatDuration(30_000), "30s");
  });
});

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
