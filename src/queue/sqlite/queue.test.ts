import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { runQueueContract } from "../contract.ts";
import { SqliteQueue } from "./queue.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-queue-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

runQueueContract("sqlite (inline)", (opts) => new SqliteQueue(":memory:", opts));
runQueueContract("sqlite (writer thread, file)", (opts) => new SqliteQueue(join(dir, `q${++n}.db`), opts));

test("sqlite: an acknowledged enqueue is in the file when the queue is reopened", async () => {
  const file = join(dir, "reopen.db");
  const q1 = new SqliteQueue(file);
  const [r] = await q1.enqueue("q", [{ body: Buffer.from("kept") }]);
  await q1.close();
  const q2 = new SqliteQueue(file);
  const [m] = await q2.lease("q", 1, 1000);
  assert.equal(m?.id, r!.id);
  assert.equal(m?.body.toString(), "kept");
  await q2.close();
});
