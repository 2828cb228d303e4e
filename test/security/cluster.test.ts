/**
 * Issue 13: the cluster seams treat what the broker and the database hand back as untrusted,
 * and callers' names as data, never as subjects, keys or SQL. JetStream cases run on the
 * shared nats-server (127.0.0.1:4222) under a random prefix whose streams are deleted after;
 * PostgreSQL cases in a random schema dropped after.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeBundle, hashOf } from "../../src/cluster/bundles/archive.ts";
import { BundleCache } from "../../src/cluster/bundles/cache.ts";
import type { NatsBlobBackend } from "../../src/cluster/bundles/nats.ts";
import { openTestBackend } from "../../src/cluster/bundles/test-backend.ts";
import { SHARED_NATS, sharedNatsUnavailable } from "../../src/queue/jetstream/nats-cluster.ts";
import { Names } from "../../src/queue/jetstream/names.ts";
import { JetStreamQueue } from "../../src/queue/jetstream/queue.ts";
import { versionInput } from "../../src/store/contract.ts";
import { dropSchema, pgUnavailable, randomSchema, TEST_PG } from "../../src/store/postgres/pg-test-db.ts";
import { PostgresStore } from "../../src/store/postgres/store.ts";

const NATS = SHARED_NATS;
const natsSkip = await sharedNatsUnavailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("JetStream queue: broker input and names", { skip: natsSkip }, () => {
  const prefix = `SEC${randomBytes(4).toString("hex")}`;
  const names = new Names(prefix);
  let q: JetStreamQueue;
  let nc: NatsConnection;
  before(async () => {
    q = await JetStreamQueue.open({ servers: NATS, prefix });
    nc = await connect({ servers: NATS });
  });
  after(async () => {
    await q?.close();
    const jsm = await jetstreamManager(nc);
    for (const s of [names.workStream, names.deadStream, `KV_${names.stateBucket}`])
      await jsm.streams.delete(s).catch(() => {});
    await nc?.close();
  });

  test("attack: a lease token of one queue used on another queue's message → refused", async () => {
    await q.enqueue("victim", [{ id: "v1", body: Buffer.from("secret") }]);
    await q.enqueue("mine", [{ id: "m1", body: Buffer.from("x") }]);
    const [mine] = await q.lease("mine", 1, 5000);
    const [theirs] = await q.lease("victim", 1, 5000);
    assert.equal(await q.ack("v1", mine!.token), false);
    assert.equal(await q.deadLetter("v1", mine!.token, "x", "failed"), false);
    assert.equal(await q.nack("v1", "garbage-without-queue", 0, "x"), false);
    assert.equal(await q.extend("v1", "*.>", 1000), false);
    assert.equal((await q.get("v1"))?.state, "leased", "the victim's lease is untouched");
    assert.equal(await q.ack("v1", theirs!.token), true);
  });

  test("attack: a message published straight onto a queue's subject without Nimbus headers → terminated, never leased", async () => {
    const js = (await import("@nats-io/jetstream")).jetstream(nc);
    await js.publish(names.work("raw"), Buffer.from("injected"));
    const h = headers();
    h.set("Nimbus-Id", "x".repeat(5000));
    await js.publish(names.work("raw"), Buffer.from("oversized id"), { headers: h });
    assert.deepEqual(await q.lease("raw", 10, 5000), []);
    const jsm = await jetstreamManager(nc);
    const left = async () =>
      (await jsm.streams.info(names.workStream, { subjects_filter: names.work("raw") })).state.subjects?.[
        names.work("raw")
      ] ?? 0;
    // The terminate is sent without waiting for the server's reply: give it a moment.
    for (let i = 0; i < 40 && (await left()) > 0; i++) await sleep(50);
    assert.equal(await left(), 0, "removed from the work stream");
  });

  test("attack: queue names with subject wildcards and dots ('a.>', '*', 'a.b') → separate queues", async () => {
    await q.enqueue("a.b", [{ id: "ab", body: Buffer.from("1") }]);
    await q.enqueue("a.>", [{ id: "wild", body: Buffer.from("2") }]);
    await q.enqueue("*", [{ id: "star", body: Buffer.from("3") }]);
    assert.deepEqual(
      (await q.lease("a.>", 10, 5000)).map((m) => m.id),
      ["wild"],
    );
    assert.deepEqual(
      (await q.lease("*", 10, 5000)).map((m) => m.id),
      ["star"],
    );
    assert.deepEqual((await q.stats("a.b")).ready, 1);
    const work = await q.queuesWithWork();
    for (const name of ["a.b", "a.>", "*"]) assert.ok(work.includes(name), `${name} named exactly`);
  });

  test("attack: a garbage state record written into the bucket → the message is still delivered, its record rewritten", async () => {
    await q.enqueue("g", [{ id: "g1", body: Buffer.from("payload"), meta: '{"k":1}' }]);
    const kv = await new Kvm(nc).open(names.stateBucket);
    await kv.put(names.stateKey("g", "g1"), Buffer.from("{not json"));
    const [m] = await q.lease("g", 1, 5000);
    assert.equal(m?.id, "g1");
    assert.equal(m?.body.toString(), "payload");
    assert.equal(m?.meta, '{"k":1}');
    assert.equal(await q.ack("g1", m!.token), true);
    assert.equal((await q.get("g1"))?.state, "succeeded");
  });

  test("attack: the same message id enqueued twice (a replayed publish) → stored once", async () => {
    const [a] = await q.enqueue("dup", [{ id: "same", body: Buffer.from("1") }]);
    const [b] = await q.enqueue("dup", [{ id: "same", body: Buffer.from("2") }]);
    assert.equal(a!.duplicate, false);
    assert.equal(b!.duplicate, true);
    await sleep(50);
    assert.equal((await q.lease("dup", 10, 5000)).length, 1);
  });

  test("attack: an oversized queue name or message id → refused with a clear error, nothing stored", async () => {
    await assert.rejects(
      q.enqueue("q".repeat(201), [{ body: Buffer.from("x") }]),
      /queue name must be 1-200/,
    );
    await assert.rejects(
      q.enqueue("ok", [{ id: "i".repeat(201), body: Buffer.from("x") }]),
      /message id must be 1-200/,
    );
    assert.equal((await q.stats("ok")).ready, 0);
  });
});

describe("bundles in shared storage: the bucket is not trusted", { skip: natsSkip }, () => {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-sec-bundles-"));
  let backend: NatsBlobBackend;
  let dispose: () => Promise<void>;
  before(async () => {
    ({ backend, dispose } = await openTestBackend());
  });
  after(async () => {
    await dispose?.();
    rmSync(dir, { recursive: true, force: true });
  });

  test("attack: a bundle replaced in shared storage (other code under a known hash) → refused, nothing cached", async () => {
    const good = encodeBundle({ "index.mjs": Buffer.from("export default () => new Response('ok')") });
    const evil = encodeBundle({ "index.mjs": Buffer.from("export default () => steal()") });
    await backend.put(hashOf(good), evil);
    const node = new BundleCache(backend, { dir: join(dir, "n1") });
    await assert.rejects(node.dir(hashOf(good)), /does not match its hash: refused/);
    assert.deepEqual(readdirSync(join(dir, "n1")), [], "no directory written");
  });

  test("attack: a stored bundle whose file names climb out ('../x') → refused before any file is written", async () => {
    const name = Buffer.from("../escaped");
    const head = Buffer.alloc(6);
    head.writeUInt16BE(name.length, 0);
    head.writeUInt32BE(1, 2);
    const count = Buffer.alloc(4);
    count.writeUInt32BE(1);
    const blob = Buffer.concat([Buffer.from("NIMBUS-BUNDLE-1\n"), count, head, name, Buffer.from("x")]);
    await backend.put(hashOf(blob), blob);
    const node = new BundleCache(backend, { dir: join(dir, "n2", "cache") });
    await assert.rejects(node.dir(hashOf(blob)), /bad file name/);
    assert.equal(existsSync(join(dir, "n2", "escaped")), false);
  });
});

const pgSkip = (await pgUnavailable()) ?? false;

describe("PostgreSQL store: names are data", { skip: pgSkip }, () => {
  test("attack: SQL in tenant, function name, hash and log text → stored and read back literally", async () => {
    const schema = randomSchema();
    const s = await PostgresStore.open({ connectionString: TEST_PG, schema });
    try {
      const evil = "x'); DROP TABLE versions; --";
      await s.addVersion({ ...versionInput(evil, evil), tenant: evil });
      await s.writeBatch(
        [],
        [{ tenant: evil, fn: evil, version: 1, invocationId: evil, t: 1, level: "info", msg: evil }],
      );
      assert.equal((await s.getFunction(evil, evil))?.name, evil);
      assert.equal((await s.findVersionByHash(evil, evil, evil))?.version, 1);
      assert.equal((await s.listLogs({ tenant: evil, fn: evil, invocationId: evil }))[0]?.msg, evil);
    } finally {
      await s.close();
      await dropSchema(schema);
    }
  });

  test("attack: a schema name carrying SQL → refused before any statement runs", async () => {
    await assert.rejects(
      PostgresStore.open({ connectionString: TEST_PG, schema: "public; DROP SCHEMA public" }),
      /must match/,
    );
  });
});
