/**
 * Issue 7: one function must not blind metering for everyone. The recorder writes every
 * function's records and logs in shared batches; a bad row (from a misbehaving instance, or
 * one the database refuses) must cost only itself.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, test } from "node:test";
import { Recorder } from "../../src/invoker/recorder.ts";
import { SqliteStore } from "../../src/store/sqlite/store.ts";
import type { InvocationRecord, LogRecord } from "../../src/store/types.ts";
import { cleanup } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-recorder-"));
after(() => cleanup(dir));

function invocation(fn: string, id: string): InvocationRecord {
  return {
    id,
    tenant: "default",
    fn,
    version: 1,
    trigger: "http",
    start: Date.now(),
    durationMs: 3.2,
    billedMs: 4,
    memoryMB: 128,
    gbSeconds: 0.0005,
    cpuMs: 1,
    coldStart: false,
    status: 200,
    errorCode: null,
    firstByteMs: 2,
  };
}

function line(fn: string, msg: unknown): LogRecord {
  return {
    tenant: "default",
    fn,
    version: 1,
    invocationId: null,
    t: Date.now(),
    level: "info",
    msg: msg as string,
  };
}

/** A store on a fresh file, with its writer thread (as `nimbus serve` runs it). */
function openStore(name: string): { store: SqliteStore; file: string } {
  const file = join(dir, `${name}.db`);
  const store = new SqliteStore(file);
  store.startWriter();
  return { store, file };
}

test("attack: function logs a msg that is an object, NaN time, unknown level → coerced, nobody's rows lost", async () => {
  const { store } = openStore("coerce");
  const errors: unknown[] = [];
  const rec = new Recorder(store, (e) => errors.push(e), 60_000);
  rec.record(invocation("neighbour", "n-1"));
  rec.log(line("neighbour", "neighbour line"));
  rec.log({ ...line("evil", { not: "a string" }), t: Number.NaN, level: "shout" });
  rec.log(line("evil", 12345n as unknown));
  rec.log(line("evil", "x".repeat(300_000)));
  rec.record(invocation("neighbour", "n-2"));
  await rec.close();
  assert.deepEqual(errors, []);
  assert.equal((await store.listInvocations("default", "neighbour", 10)).length, 2);
  assert.deepEqual(
    (await store.listLogs({ tenant: "default", fn: "neighbour" })).map((l) => l.msg),
    ["neighbour line"],
  );
  const evil = await store.listLogs({ tenant: "default", fn: "evil" });
  assert.equal(evil.length, 3);
  assert.equal(evil[0]!.msg, '{"not":"a string"}');
  assert.equal(evil[0]!.level, "info");
  assert.ok(Number.isFinite(evil[0]!.t));
  assert.ok(evil[2]!.msg.length < 300_000 && evil[2]!.msg.endsWith("[cut: 300000 characters]"));
  await store.close();
});

test("attack: a row the database refuses sits in a shared batch → only that row is lost, counted and reported", async () => {
  const { store, file } = openStore("refuse");
  // A real refusal by SQLite (a trigger stands in for any constraint a row could break).
  const db = new DatabaseSync(file);
  db.exec(
    "CREATE TRIGGER refuse_poison BEFORE INSERT ON logs WHEN NEW.msg = 'poison' BEGIN SELECT RAISE(ABORT, 'poison row'); END;",
  );
  db.close();
  const errors: unknown[] = [];
  const rec = new Recorder(store, (e) => errors.push(e), 60_000);
  for (let i = 0; i < 120; i++) rec.record(invocation(i % 2 ? "a" : "b", `r-${i}`));
  for (let i = 0; i < 120; i++) rec.log(line(i % 2 ? "a" : "b", `line ${i}`));
  rec.log(line("evil", "poison"));
  rec.log(line("a", "after the poison"));
  await rec.close();
  assert.equal(rec.rejected, 1);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /refused 1 of 242 rows/);
  assert.equal((await store.listInvocations("default", "a", 1000)).length, 60);
  assert.equal((await store.listInvocations("default", "b", 1000)).length, 60);
  const aLogs = await store.listLogs({ tenant: "default", fn: "a", limit: 1000 });
  assert.equal(aLogs.length, 61);
  assert.equal((await store.listLogs({ tenant: "default", fn: "evil" })).length, 0);
  await store.close();
});
