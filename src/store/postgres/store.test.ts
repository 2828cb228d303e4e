import assert from "node:assert/strict";
import { test } from "node:test";
import { bucketOf } from "../../observability/rollup.ts";
import { runStoreContract } from "../contract.ts";
import type { InvocationRecord, Store } from "../types.ts";
import { dropSchema, pgUnavailable, randomSchema, TEST_PG } from "./pg-test-db.ts";
import { PostgresStore } from "./store.ts";

const skip = await pgUnavailable();
if (skip) console.log(`# skipped the PostgreSQL store contract: ${skip}`);
else
  runStoreContract("postgres", async () => {
    const schema = randomSchema();
    const open = () => PostgresStore.open({ connectionString: TEST_PG, schema, maxConnections: 4 });
    const others: Store[] = [];
    return {
      store: await open(),
      another: async () => {
        const s = await open();
        others.push(s);
        return s;
      },
      dispose: async () => {
        for (const s of others) await s.close().catch(() => {});
        await dropSchema(schema);
      },
    };
  });

/** A billed 10 ms record of `acme/f` starting at `start`. */
function rec(id: string, start: number): InvocationRecord {
  return {
    id,
    tenant: "acme",
    fn: "f",
    version: 1,
    trigger: "http",
    start,
    durationMs: 10,
    billedMs: 10,
    memoryMB: 128,
    gbSeconds: 0.00125,
    cpuMs: 1,
    coldStart: false,
    status: 200,
    errorCode: null,
    firstByteMs: null,
  };
}

// Cluster-only: several nodes write and compact one rollup at once. SQLite has one writer.
test("rollup across nodes: concurrent batches into one minute add up; concurrent compactions fold each minute once", {
  skip,
}, async () => {
  const schema = randomSchema();
  const open = () => PostgresStore.open({ connectionString: TEST_PG, schema, maxConnections: 4 });
  const a = await open();
  const b = await open();
  try {
    const t0 = 1_800_000_000_000;
    await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        (i % 2 ? a : b).writeBatch(
          [rec(`r${i}a`, t0 + i), rec(`r${i}b`, t0 + 60_000 + i)],
          [],
          [{ tenant: "acme", fn: "f", t: t0 + i, instances: i }],
        ),
      ),
    );
    const rows = await a.rollup("acme", "f", t0, t0 + 120_000);
    assert.deepEqual(
      rows.map((r) => [r.t, r.requests, r.billedMs, r.hist[bucketOf(10)], r.instances]),
      [
        [t0, 16, 160, 16, 15],
        [t0 + 60_000, 16, 160, 16, 0],
      ],
      "no batch overwrote another's counts",
    );
    const removed = await Promise.all([
      a.compactRollup(t0 + 3_600_000 * 2, 3_600_000, 10 * 3_600_000),
      b.compactRollup(t0 + 3_600_000 * 2, 3_600_000, 10 * 3_600_000),
    ]);
    assert.equal(removed[0]! + removed[1]!, 2, "each minute was folded by one node");
    const hours = await b.rollup("acme", "f", t0, t0 + 3_600_000);
    assert.deepEqual(
      hours.map((r) => [r.t, r.requests, r.hist[bucketOf(10)]]),
      [[t0, 32, 32]],
    );
  } finally {
    await a.close();
    await b.close();
    await dropSchema(schema);
  }
});
