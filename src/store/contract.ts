/**
 * The contract every Store implementation passes (hono `common.case.test.ts` style): each
 * implementation's test file calls `runStoreContract` with a factory that opens a fresh,
 * empty database and can open a second store over the same database (a second node).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateConfig } from "../build/config.ts";
import type { InvocationRecord, LogRecord, Store, VersionRecord } from "./types.ts";

/** One fresh database for one test. */
export interface StoreFixture {
  /** The first store over the database. */
  store: Store;
  /** Opens another store over the same database (as a second node would). */
  another(): Promise<Store>;
  /** Closes what `another` opened and removes the database. `store` is closed by the test. */
  dispose(): Promise<void>;
}

/** Makes a fresh, empty database. */
export type StoreFactory = () => Promise<StoreFixture>;

const T = "acme";

/** A version record to add, differing by `hash`. */
export function versionInput(name: string, hash: string, createdAt = 1_800_000_000_000) {
  return {
    tenant: T,
    name,
    hash,
    executor: "isolate" as const,
    config: validateConfig({ memory: 256, env: { A: "1" } }),
    codeDir: `/code/${name}/${hash}`,
    sizeBytes: 123,
    createdAt,
  } satisfies Omit<VersionRecord, "version">;
}

function invocation(id: string, fn: string, start: number, over: Partial<InvocationRecord> = {}) {
  return {
    id,
    tenant: T,
    fn,
    version: 1,
    trigger: "http",
    start,
    durationMs: 12.5,
    billedMs: 13,
    memoryMB: 128,
    gbSeconds: 0.0016,
    cpuMs: 4.25,
    coldStart: false,
    status: 200,
    errorCode: null,
    firstByteMs: 3.5,
    eventId: null,
    attempt: null,
    queueWaitMs: null,
    e2eMs: null,
    ...over,
  } satisfies InvocationRecord;
}

function line(fn: string, t: number, msg: string, invocationId: string | null = null): LogRecord {
  return { tenant: T, fn, version: 1, invocationId, t, level: "info", msg };
}

/** Runs the contract suite against `make`. */
export function runStoreContract(name: string, make: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    /** Runs `body` with a fresh database and closes/removes everything after it. */
    const withStore = async (body: (s: Store, fx: StoreFixture) => Promise<void>) => {
      const fx = await make();
      try {
        await body(fx.store, fx);
      } finally {
        await fx.store.close();
        await fx.dispose();
      }
    };

    test("versions are numbered 1, 2, 3 per function; latest follows; records round-trip", () =>
      withStore(async (s) => {
        assert.equal(await s.getFunction(T, "f"), undefined);
        assert.deepEqual(await s.listVersions(T, "f"), []);
        const v1 = await s.addVersion(versionInput("f", "h1", 1_800_000_000_001));
        const v2 = await s.addVersion(versionInput("f", "h2", 1_800_000_000_002));
        const g1 = await s.addVersion(versionInput("g", "h1"));
        assert.deepEqual([v1.version, v2.version, g1.version], [1, 2, 1]);
        assert.deepEqual(await s.getVersion(T, "f", 1), v1, "a version reads back as written");
        assert.deepEqual(v1.config, versionInput("f", "h1").config);
        assert.equal(await s.getVersion(T, "f", 3), undefined);
        assert.deepEqual(
          (await s.listVersions(T, "f")).map((v) => [v.version, v.hash]),
          [
            [1, "h1"],
            [2, "h2"],
          ],
        );
        const f = await s.getFunction(T, "f");
        assert.equal(f?.latest, 2);
        assert.equal(f?.createdAt, 1_800_000_000_001);
        assert.equal(f?.updatedAt, 1_800_000_000_002);
        assert.deepEqual(
          (await s.listFunctions(T)).map((x) => x.name),
          ["f", "g"],
        );
        assert.deepEqual(await s.listFunctions("other-tenant"), [], "tenants see only their own");
        assert.equal(await s.getFunction("other-tenant", "f"), undefined);
      }));

    test("setLatest moves latest (rollback); findVersionByHash finds the version of that code", () =>
      withStore(async (s) => {
        await s.addVersion(versionInput("f", "h1"));
        await s.addVersion(versionInput("f", "h2"));
        await s.setLatest(T, "f", 1);
        assert.equal((await s.getFunction(T, "f"))?.latest, 1);
        assert.equal((await s.findVersionByHash(T, "f", "h2"))?.version, 2);
        assert.equal(await s.findVersionByHash(T, "f", "nope"), undefined);
        assert.equal(await s.findVersionByHash(T, "g", "h1"), undefined, "hashes are per function");
      }));

    test("identical code gives the same version: addVersion of a known hash returns it and makes it latest", () =>
      withStore(async (s) => {
        await s.addVersion(versionInput("f", "h1"));
        await s.addVersion(versionInput("f", "h2"));
        const again = await s.addVersion(versionInput("f", "h1"));
        assert.equal(again.version, 1);
        assert.equal((await s.listVersions(T, "f")).length, 2);
        assert.equal((await s.getFunction(T, "f"))?.latest, 1);
      }));

    test("concurrent deploys from two stores over one database: numbers unique and gapless, identical code one version", () =>
      withStore(async (a, fx) => {
        const b = await fx.another();
        // 12 different bundles deployed through both stores at once.
        const distinct = await Promise.all(
          Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).addVersion(versionInput("f", `d${i}`))),
        );
        assert.deepEqual(
          distinct.map((v) => v.version).sort((x, y) => x - y),
          Array.from({ length: 12 }, (_, i) => i + 1),
        );
        // The same bundle deployed from both stores at once, several times over.
        const same = await Promise.all(
          Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).addVersion(versionInput("g", "same"))),
        );
        assert.deepEqual(new Set(same.map((v) => v.version)), new Set([1]));
        assert.equal((await b.listVersions(T, "g")).length, 1);
        // Each store sees what the other wrote.
        const viaB = await b.listVersions(T, "f");
        assert.equal(viaB.length, 12);
        assert.equal((await b.getFunction(T, "f"))?.latest, (await a.getFunction(T, "f"))?.latest);
        await b.close();
      }));

    test("writeBatch stores invocation records (every field) and lists them newest first; same id replaces", () =>
      withStore(async (s) => {
        await s.writeBatch([], []);
        const full = invocation("i3", "f", 3000, {
          trigger: "async",
          coldStart: true,
          status: 500,
          errorCode: "NIMBUS_FUNCTION_ERROR",
          firstByteMs: null,
          eventId: "ev1",
          attempt: 2,
          queueWaitMs: 40.5,
          e2eMs: 60.25,
        });
        await s.writeBatch([invocation("i1", "f", 1000), invocation("i2", "f", 2000), full], []);
        await s.writeBatch([invocation("x", "other", 5000)], []);
        const got = await s.listInvocations(T, "f", 10);
        assert.deepEqual(
          got.map((r) => r.id),
          ["i3", "i2", "i1"],
        );
        assert.deepEqual(got[0], full);
        assert.deepEqual(got[2], invocation("i1", "f", 1000));
        assert.equal((await s.listInvocations(T, "f", 2)).length, 2);
        await s.writeBatch([invocation("i1", "f", 1000, { status: 204 })], []);
        const again = await s.listInvocations(T, "f", 10);
        assert.equal(again.length, 3);
        assert.equal(again.find((r) => r.id === "i1")?.status, 204);
        assert.deepEqual(await s.listInvocations("other-tenant", "f", 10), []);
      }));

    test("a batch of many records and lines is written whole", () =>
      withStore(async (s) => {
        const invs = Array.from({ length: 1200 }, (_, i) => invocation(`r${i}`, "f", i));
        const logs = Array.from({ length: 1300 }, (_, i) => line("f", i, `line ${i}`));
        await s.writeBatch(invs, logs);
        assert.equal((await s.listInvocations(T, "f", 5000)).length, 1200);
        assert.equal((await s.listLogs({ tenant: T, fn: "f", limit: 5000 })).length, 1300);
      }));

    test("listLogs: oldest first, the newest `limit`, after a seq, by invocation, since a time", () =>
      withStore(async (s) => {
        await s.writeBatch(
          [],
          [
            line("f", 100, "a", "inv1"),
            line("f", 200, "b", "inv2"),
            line("f", 300, "c", "inv1"),
            line("g", 300, "other fn"),
          ],
        );
        await s.writeBatch([], [line("f", 400, "d")]);
        const all = await s.listLogs({ tenant: T, fn: "f" });
        assert.deepEqual(
          all.map((l) => l.msg),
          ["a", "b", "c", "d"],
        );
        const seqs = all.map((l) => l.seq!);
        assert.deepEqual(
          [...seqs].sort((x, y) => x - y),
          seqs,
          "seq grows in write order",
        );
        assert.deepEqual(all[0], { ...line("f", 100, "a", "inv1"), seq: seqs[0] });
        assert.deepEqual(
          (await s.listLogs({ tenant: T, fn: "f", limit: 2 })).map((l) => l.msg),
          ["c", "d"],
        );
        assert.deepEqual(
          (await s.listLogs({ tenant: T, fn: "f", afterSeq: seqs[1] })).map((l) => l.msg),
          ["c", "d"],
        );
        assert.deepEqual(
          (await s.listLogs({ tenant: T, fn: "f", invocationId: "inv1" })).map((l) => l.msg),
          ["a", "c"],
        );
        assert.deepEqual(
          (await s.listLogs({ tenant: T, fn: "f", since: 300 })).map((l) => l.msg),
          ["c", "d"],
        );
      }));

    test("pruneLogs deletes old lines, then caps each function's characters keeping the newest", () =>
      withStore(async (s) => {
        const lines = [
          line("f", 1, "old-1"),
          line("f", 2, "old-2"),
          ...Array.from({ length: 10 }, (_, i) => line("f", 100 + i, `${i}`.padStart(10, "x"))),
          line("g", 100, "small"),
        ];
        await s.writeBatch([], lines);
        // Two old lines go; f's ten 10-character lines exceed 35 characters: the newest 3 stay.
        assert.equal(await s.pruneLogs(50, 35), 2 + 7);
        assert.deepEqual(
          (await s.listLogs({ tenant: T, fn: "f" })).map((l) => l.msg),
          ["xxxxxxxxx7", "xxxxxxxxx8", "xxxxxxxxx9"],
        );
        assert.equal((await s.listLogs({ tenant: T, fn: "g" })).length, 1);
        assert.equal(await s.pruneLogs(50, 35), 0);
      }));

    test("usage sums billed requests, errors, refusals and resources per function in [from, to)", () =>
      withStore(async (s) => {
        await s.writeBatch(
          [
            invocation("a", "f", 1000),
            invocation("b", "f", 1500, { status: 500, errorCode: "NIMBUS_FUNCTION_ERROR" }),
            invocation("c", "f", 1600, {
              billedMs: 0,
              gbSeconds: 0,
              cpuMs: 0,
              status: 429,
              errorCode: "NIMBUS_THROTTLED",
            }),
            invocation("d", "g", 1999),
            invocation("late", "f", 2000),
            invocation("early", "f", 999),
          ],
          [],
        );
        const rows = await s.usage(T, 1000, 2000);
        assert.deepEqual(rows, [
          { fn: "f", requests: 2, errors: 1, refused: 1, gbSeconds: 0.0032, cpuMs: 8.5, billedMs: 26 },
          { fn: "g", requests: 1, errors: 0, refused: 0, gbSeconds: 0.0016, cpuMs: 4.25, billedMs: 13 },
        ]);
        assert.deepEqual(await s.usage("other-tenant", 0, 1e15), []);
      }));

    test("deleteFunction removes the function, its versions, records and logs, and nothing else", () =>
      withStore(async (s) => {
        await s.addVersion(versionInput("f", "h1"));
        await s.addVersion(versionInput("g", "h1"));
        await s.writeBatch(
          [invocation("1", "f", 1), invocation("2", "g", 1)],
          [line("f", 1, "f-line"), line("g", 1, "g-line")],
        );
        await s.deleteFunction(T, "f");
        assert.equal(await s.getFunction(T, "f"), undefined);
        assert.deepEqual(await s.listVersions(T, "f"), []);
        assert.deepEqual(await s.listInvocations(T, "f", 10), []);
        assert.deepEqual(await s.listLogs({ tenant: T, fn: "f" }), []);
        assert.equal((await s.listVersions(T, "g")).length, 1);
        assert.equal((await s.listInvocations(T, "g", 10)).length, 1);
        assert.equal((await s.listLogs({ tenant: T, fn: "g" })).length, 1);
        // A new deploy after deletion starts again at version 1.
        assert.equal((await s.addVersion(versionInput("f", "h9"))).version, 1);
      }));

    test("API keys: found by hash with scopes; unknown hash gives undefined; a hash is unique", () =>
      withStore(async (s, fx) => {
        const key = { id: "k1", tenant: T, hash: "sha-1", scopes: ["deploy", "read"], createdAt: 42 };
        await s.addApiKey(key);
        assert.deepEqual(await s.findApiKey("sha-1"), key);
        assert.equal(await s.findApiKey("sha-2"), undefined);
        await assert.rejects(s.addApiKey({ ...key, id: "k2" }));
        const b = await fx.another();
        assert.deepEqual(await b.findApiKey("sha-1"), key, "another node finds the key");
        await b.close();
      }));

    test("named queues: put replaces, get/list per tenant in name order, delete; another node sees them", () =>
      withStore(async (s, fx) => {
        const q = {
          tenant: T,
          name: "jobs",
          maxRetries: 3,
          dlq: null,
          retentionMs: 345_600_000,
          maxBacklog: 1000,
          createdAt: 7,
        };
        await s.putQueue(q);
        await s.putQueue({ ...q, name: "audit", dlq: "audit-dlq" });
        await s.putQueue({ ...q, tenant: "other", name: "elsewhere" });
        assert.deepEqual(await s.getQueue(T, "jobs"), q);
        await s.putQueue({ ...q, maxRetries: 5 });
        assert.equal((await s.getQueue(T, "jobs"))?.maxRetries, 5, "put replaces the definition");
        assert.deepEqual(
          (await s.listQueues(T)).map((x) => [x.name, x.dlq]),
          [
            ["audit", "audit-dlq"],
            ["jobs", null],
          ],
        );
        const b = await fx.another();
        assert.equal((await b.getQueue(T, "audit"))?.dlq, "audit-dlq", "another node sees the queue");
        await b.close();
        await s.deleteQueue(T, "jobs");
        assert.equal(await s.getQueue(T, "jobs"), undefined);
        assert.deepEqual(
          (await s.listQueues("other")).map((x) => x.name),
          ["elsewhere"],
        );
      }));
  });
}
