/**
 * The contract every Store implementation passes (hono `common.case.test.ts` style): each
 * implementation's test file calls `runStoreContract` with a factory that opens a fresh,
 * empty database and can open a second store over the same database (a second node).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { validateConfig } from "../build/config.ts";
import {
  bucketOf,
  DURATION_BUCKETS_MS,
  emptyRow,
  quantile,
  type RollupRow,
} from "../observability/rollup.ts";
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
    acquireMs: null,
    ...over,
  } satisfies InvocationRecord;
}

function line(
  fn: string,
  t: number,
  msg: string,
  invocationId: string | null = null,
  level = "info",
): LogRecord {
  return { tenant: T, fn, version: 1, invocationId, t, level, msg };
}

/** An hour start (also a minute start) for rollup cases. */
const H = 1_800_000_000_000;
const MIN = 60_000;
const HOUR = 3_600_000;

/** The histogram of these durations, in the shared bucket layout. */
function histOf(durations: number[]): number[] {
  const h = new Array<number>(DURATION_BUCKETS_MS.length + 1).fill(0);
  for (const d of durations) h[bucketOf(d)]!++;
  return h;
}

/** Compares a rollup row with what it should hold; float sums compare to 1e-9. */
function assertRollup(got: RollupRow | undefined, want: RollupRow, what: string): void {
  assert.ok(got, `${what}: row present`);
  const { gbSeconds, cpuMs, durationMs, ...exact } = got;
  const { gbSeconds: wg, cpuMs: wc, durationMs: wd, ...wantExact } = want;
  assert.deepEqual(exact, wantExact, what);
  for (const [g, w, name] of [
    [gbSeconds, wg, "gbSeconds"],
    [cpuMs, wc, "cpuMs"],
    [durationMs, wd, "durationMs"],
  ] as const) {
    assert.ok(Math.abs(g - w) < 1e-9, `${what}: ${name} ${g} ≈ ${w}`);
  }
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
          acquireMs: 7.75,
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

    test("listInvocations keeps only successes or only failures; getInvocation finds one record of a tenant", () =>
      withStore(async (s, fx) => {
        const failed = (id: string, start: number) =>
          invocation(id, "f", start, { status: 500, errorCode: "NIMBUS_FUNCTION_ERROR", acquireMs: 2.5 });
        await s.writeBatch(
          [
            invocation("ok1", "f", 1000),
            failed("err1", 2000),
            invocation("ok2", "f", 3000),
            failed("err2", 4000),
            invocation("g1", "g", 5000, { errorCode: "NIMBUS_TIMEOUT" }),
          ],
          [],
        );
        const ids = async (outcome?: "ok" | "error", limit = 10) =>
          (await s.listInvocations(T, "f", limit, outcome)).map((r) => r.id);
        assert.deepEqual(await ids(), ["err2", "ok2", "err1", "ok1"]);
        assert.deepEqual(await ids("ok"), ["ok2", "ok1"]);
        assert.deepEqual(await ids("error"), ["err2", "err1"]);
        assert.deepEqual(await ids("error", 1), ["err2"], "the limit counts kept records");
        assert.deepEqual(await s.getInvocation(T, "err1"), failed("err1", 2000));
        assert.equal(await s.getInvocation(T, "nope"), undefined);
        assert.equal(
          await s.getInvocation("other-tenant", "err1"),
          undefined,
          "another tenant's id is not found",
        );
        const b = await fx.another();
        assert.deepEqual(
          await b.getInvocation(T, "ok2"),
          invocation("ok2", "f", 3000),
          "another node reads it",
        );
        await b.close();
      }));

    test("listLogs filters by levels and by text: case-insensitive contains, % _ and \\ match themselves", () =>
      withStore(async (s) => {
        await s.writeBatch(
          [],
          [
            line("f", 1, "Disk 100% full", null, "info"),
            line("f", 2, "disk_usage high", null, "error"),
            line("f", 3, "diskXusage ok", null, "warn"),
            line("f", 4, "100 percent", null, "info"),
            line("f", 5, "path C:\\temp", null, "debug"),
            line("g", 6, "disk elsewhere", null, "error"),
          ],
        );
        const msgs = async (q: { levels?: string[]; text?: string }) =>
          (await s.listLogs({ tenant: T, fn: "f", ...q })).map((l) => l.msg);
        assert.deepEqual(await msgs({ text: "DISK" }), [
          "Disk 100% full",
          "disk_usage high",
          "diskXusage ok",
        ]);
        assert.deepEqual(await msgs({ text: "%" }), ["Disk 100% full"], "% is not a wildcard");
        assert.deepEqual(await msgs({ text: "0%" }), ["Disk 100% full"]);
        assert.deepEqual(await msgs({ text: "k_u" }), ["disk_usage high"], "_ is not a wildcard");
        assert.deepEqual(await msgs({ text: "_" }), ["disk_usage high"]);
        assert.deepEqual(await msgs({ text: "\\t" }), ["path C:\\temp"], "a backslash is literal too");
        assert.deepEqual(await msgs({ text: "no such text" }), []);
        assert.deepEqual(await msgs({ levels: ["error", "warn"] }), ["disk_usage high", "diskXusage ok"]);
        assert.deepEqual(await msgs({ levels: ["info"], text: "100" }), ["Disk 100% full", "100 percent"]);
        assert.equal((await msgs({ levels: [] })).length, 5, "no levels: no level filter");
      }));

    test("writeBatch adds records and instance samples to the per-minute rollup; another node reads it", () =>
      withStore(async (s, fx) => {
        const err = { status: 500, errorCode: "NIMBUS_FUNCTION_ERROR" };
        const refused = { billedMs: 0, gbSeconds: 0, cpuMs: 0, status: 429, errorCode: "NIMBUS_THROTTLED" };
        await s.writeBatch(
          [
            invocation("a", "f", H + 1000, { coldStart: true }),
            invocation("b", "f", H + 2000, { durationMs: 40, ...err }),
            invocation("c", "f", H + 3000, refused),
            invocation("d", "g", H + 4000),
            invocation("e", "f", H + MIN + 5, { durationMs: 700 }),
            { ...invocation("x", "f", H + 1000), tenant: "other-tenant" },
          ],
          [],
          [
            { tenant: T, fn: "f", t: H + 5000, instances: 3 },
            { tenant: T, fn: "f", t: H + 50_000, instances: 2 },
            { tenant: T, fn: "g", t: H + 2 * MIN + 1, instances: 1.7 },
          ],
        );
        // A second batch into the same minute adds to it; a smaller sample does not lower the most instances.
        await s.writeBatch(
          [invocation("a2", "f", H + 30_000)],
          [],
          [{ tenant: T, fn: "f", t: H + 10, instances: 1 }],
        );
        const row = (over: Partial<RollupRow>): RollupRow => ({ ...emptyRow(T, "f", H), ...over });
        const f = await s.rollup(T, "f", H, H + 10 * MIN);
        assert.deepEqual(
          f.map((r) => r.t),
          [H, H + MIN],
        );
        assertRollup(
          f[0],
          row({
            requests: 3,
            errors: 1,
            refused: 1,
            cold: 1,
            durationMs: 12.5 + 40 + 12.5,
            gbSeconds: 3 * 0.0016,
            cpuMs: 3 * 4.25,
            billedMs: 39,
            instances: 3,
            hist: histOf([12.5, 40, 12.5]),
          }),
          "f's first minute",
        );
        assert.deepEqual([quantile(f[0]!.hist, 0.5), quantile(f[0]!.hist, 0.99)], [15, 50]);
        assertRollup(
          f[1],
          row({
            t: H + MIN,
            requests: 1,
            durationMs: 700,
            gbSeconds: 0.0016,
            cpuMs: 4.25,
            billedMs: 13,
            hist: histOf([700]),
          }),
          "f's second minute",
        );
        const all = await s.rollup(T, undefined, H, H + 10 * MIN);
        assert.deepEqual(
          all.map((r) => [r.fn, r.t, r.requests, r.instances]),
          [
            ["f", H, 3, 3],
            ["g", H, 1, 0],
            ["f", H + MIN, 1, 0],
            ["g", H + 2 * MIN, 0, 1],
          ],
          "every function of the tenant, a sampled minute without records too",
        );
        assert.deepEqual(
          (await s.rollup(T, "f", H + MIN, H + 2 * MIN)).map((r) => r.t),
          [H + MIN],
          "from <= t < to",
        );
        assert.deepEqual(
          (await s.rollup("other-tenant", undefined, H, H + HOUR)).map((r) => r.requests),
          [1],
        );
        const b = await fx.another();
        assert.deepEqual(await b.rollup(T, "f", H, H + 10 * MIN), f, "another node reads the same rows");
        await b.close();
      }));

    test("compactRollup folds old minutes into hours, deletes old hours, and reads include hour rows", () =>
      withStore(async (s) => {
        await s.writeBatch(
          [
            invocation("m1", "f", H + MIN),
            invocation("m2", "f", H + 2 * MIN, { durationMs: 40, status: 500, errorCode: "E" }),
            invocation("m3", "f", H + 61 * MIN, { coldStart: true }),
            invocation("recent", "f", H + 5 * HOUR),
            invocation("g1", "g", H + 3 * MIN),
          ],
          [],
          [{ tenant: T, fn: "f", t: H + 2 * MIN, instances: 5 }],
        );
        // Minutes older than 2 h (before H+3h) fold; no hour is older than 10 h yet.
        assert.equal(await s.compactRollup(H + 5 * HOUR, 2 * HOUR, 10 * HOUR), 4);
        const f = await s.rollup(T, "f", H, H + 6 * HOUR);
        assert.deepEqual(
          f.map((r) => [r.t, r.requests]),
          [
            [H, 2],
            [H + HOUR, 1],
            [H + 5 * HOUR, 1],
          ],
        );
        assertRollup(
          f[0],
          {
            ...emptyRow(T, "f", H),
            requests: 2,
            errors: 1,
            durationMs: 52.5,
            gbSeconds: 0.0032,
            cpuMs: 8.5,
            billedMs: 26,
            instances: 5,
            hist: histOf([12.5, 40]),
          },
          "the hour holds its minutes' sums, histogram and most instances",
        );
        assert.equal(f[1]?.cold, 1);
        assert.deepEqual(
          (await s.rollup(T, "f", H + 30 * MIN, H + 2 * HOUR)).map((r) => r.t),
          [H, H + HOUR],
          "an hour row that starts before `from` is read",
        );
        assert.equal(await s.compactRollup(H + 5 * HOUR, 2 * HOUR, 10 * HOUR), 0, "nothing left to fold");
        // Later: the recent minute folds (1), the hours before H+2h go (H, H+1h of f; H of g: 3).
        assert.equal(await s.compactRollup(H + 12 * HOUR, 2 * HOUR, 10 * HOUR), 4);
        assert.deepEqual(
          (await s.rollup(T, undefined, 0, H + 24 * HOUR)).map((r) => [r.fn, r.t, r.requests]),
          [["f", H + 5 * HOUR, 1]],
        );
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
        assert.deepEqual(await s.rollup(T, "f", 0, 1e15), [], "its rollup rows go too");
        assert.equal((await s.rollup(T, "g", 0, 1e15)).length, 1);
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
