/** Log retention in the embedded store: old lines go, and each function's lines are size-capped. */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { SqliteStore } from "../src/store/sqlite/store.ts";
import type { LogRecord } from "../src/store/types.ts";
import { cleanup } from "./helpers.ts";

const DAY = 86_400_000;

function line(fn: string, t: number, msg: string): LogRecord {
  return { tenant: "default", fn, version: 1, invocationId: null, t, level: "info", msg };
}

describe("log retention", () => {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-retention-"));
  const store = new SqliteStore(join(dir, "nimbus.db"));
  after(async () => {
    await store.close();
    cleanup(dir);
  });

  it("deletes lines older than the retention period, oldest first, in batches", async () => {
    const now = Date.now();
    const old = Array.from({ length: 25_000 }, (_, i) => line("a", now - 8 * DAY + i, `old ${i}`));
    const fresh = Array.from({ length: 10 }, (_, i) => line("a", now - DAY + i, `fresh ${i}`));
    store.writeBatchSync([], [...old, ...fresh]);
    const deleted = await store.pruneLogs(now - 7 * DAY, 1e12);
    assert.equal(deleted, 25_000);
    const left = await store.listLogs({ tenant: "default", fn: "a", limit: 100 });
    assert.deepEqual(
      left.map((l) => l.msg),
      fresh.map((l) => l.msg),
    );
  });

  it("keeps each function's newest lines within its size cap", async () => {
    const now = Date.now();
    const big = Array.from({ length: 100 }, (_, i) =>
      line("b", now, `${String(i).padStart(3, "0")}${"x".repeat(97)}`),
    );
    store.writeBatchSync([], [...big, line("c", now, "small")]);
    // 100 lines of 100 characters; keep at most 1,050 characters: the newest 10 lines.
    await store.pruneLogs(now - 7 * DAY, 1050);
    const b = await store.listLogs({ tenant: "default", fn: "b", limit: 1000 });
    assert.equal(b.length, 10);
    assert.equal(b[0]!.msg.slice(0, 3), "090");
    assert.equal(b[9]!.msg.slice(0, 3), "099");
    const c = await store.listLogs({ tenant: "default", fn: "c", limit: 10 });
    assert.equal(c.length, 1, "a function under its cap keeps everything");
  });
});
