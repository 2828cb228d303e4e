import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { SqliteStore } from "../store/sqlite/store.ts";
import type { InvocationRecord } from "../store/types.ts";
import { bucketOf, DURATION_BUCKETS_MS, quantile, rollupRecords, summarize, toSeries } from "./rollup.ts";

const rec = (over: Partial<InvocationRecord>): InvocationRecord => ({
  id: Math.random().toString(36),
  tenant: "default",
  fn: "a",
  version: 1,
  trigger: "http",
  start: 0,
  durationMs: 5,
  billedMs: 5,
  memoryMB: 128,
  gbSeconds: 0.000625,
  cpuMs: 1,
  coldStart: false,
  status: 200,
  errorCode: null,
  firstByteMs: 4,
  ...over,
});

describe("rollup", () => {
  it("buckets durations and reads quantiles from the histogram", () => {
    assert.equal(bucketOf(0.5), 0);
    assert.equal(bucketOf(1), 0);
    assert.equal(bucketOf(1.01), 1);
    assert.equal(bucketOf(1e9), DURATION_BUCKETS_MS.length);
    const rows = rollupRecords([
      ...Array.from({ length: 98 }, () => rec({ durationMs: 4 })),
      rec({ durationMs: 120 }),
      rec({ durationMs: 900, errorCode: "NIMBUS_TIMEOUT", coldStart: true }),
      rec({ billedMs: 0, errorCode: "NIMBUS_THROTTLED" }),
    ]);
    assert.equal(rows.length, 1);
    const r = rows[0]!;
    assert.equal(r.requests, 100);
    assert.equal(r.refused, 1);
    assert.equal(r.errors, 1);
    assert.equal(r.cold, 1);
    assert.equal(quantile(r.hist, 0.5), 5);
    assert.equal(quantile(r.hist, 0.99), 150);
    assert.equal(quantile(r.hist, 1), 1000);
  });

  it("splits records by minute and fills empty steps", () => {
    const rows = rollupRecords([rec({ start: 60_000 }), rec({ start: 61_000 }), rec({ start: 185_000 })]);
    assert.deepEqual(
      rows.map((r) => [r.t, r.requests]),
      [
        [60_000, 2],
        [180_000, 1],
      ],
    );
    const s = toSeries(rows, 60_000, 240_000, 60_000);
    assert.deepEqual(
      s.map((p) => p.requests),
      [2, 0, 1],
    );
    assert.equal(s[0]!.rps, 2 / 60);
    assert.equal(summarize(rows, 180_000).requests, 3);
  });

  it("is written with the records, folds old minutes into hours, and deletes old hours", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nimbus-rollup-"));
    const store = new SqliteStore(join(dir, "db"));
    try {
      const h0 = 100 * 3_600_000;
      await store.writeBatch(
        [
          rec({ start: h0 + 60_000 }),
          rec({ start: h0 + 120_000, durationMs: 40 }),
          rec({ start: h0 + 7_200_000 }),
        ],
        [],
        [{ tenant: "default", fn: "a", t: h0 + 61_000, instances: 3 }],
      );
      await store.writeBatch([rec({ start: h0 + 60_500 })], []);
      let rows = await store.rollup("default", "a", h0, h0 + 10 * 3_600_000);
      assert.deepEqual(
        rows.map((r) => [r.t - h0, r.requests, r.instances]),
        [
          [60_000, 2, 3],
          [120_000, 1, 0],
          [7_200_000, 1, 0],
        ],
      );
      // Minutes older than 1 h (at h0 + 3 h) fold into their hour; nothing is counted twice.
      const removed = await store.compactRollup(h0 + 3 * 3_600_000, 3_600_000, 10 * 3_600_000);
      assert.equal(removed, 2);
      rows = await store.rollup("default", "a", h0, h0 + 10 * 3_600_000);
      assert.deepEqual(
        rows.map((r) => [r.t - h0, r.requests, r.instances]),
        [
          [0, 3, 3],
          [7_200_000, 1, 0],
        ],
      );
      assert.equal(quantile(rows[0]!.hist, 1), 50);
      // Hours past their retention go.
      await store.compactRollup(h0 + 20 * 3_600_000, 3_600_000, 10 * 3_600_000);
      assert.equal((await store.rollup("default", "a", 0, h0 + 30 * 3_600_000)).length, 0);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
