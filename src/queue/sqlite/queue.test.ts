import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { runQueueContract } from "../contract.ts";
import { SqliteQueue } from "./queue.ts";

runQueueContract("sqlite", (opts) => new SqliteQueue(":memory:", opts));

test("sqlite: an acknowledged enqueue is in the file when the queue is reopened", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-queue-"));
  try {
    const q1 = new SqliteQueue(join(dir, "queue.db"));
    const [r] = await q1.enqueue("q", [{ body: Buffer.from("kept") }]);
    await q1.close();
    const q2 = new SqliteQueue(join(dir, "queue.db"));
    const [m] = await q2.lease("q", 1, 1000);
    assert.equal(m?.id, r!.id);
    assert.equal(m?.body.toString(), "kept");
    await q2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
