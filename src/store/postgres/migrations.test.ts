/** Schema migrations: versioned, run at open, exactly once even when nodes start together. */
import assert from "node:assert/strict";
import { test } from "node:test";
import pg from "pg";
import { MIGRATIONS, migrate } from "./migrations.ts";
import { dropSchema, pgUnavailable, randomSchema, TEST_PG } from "./pg-test-db.ts";
import { PostgresStore } from "./store.ts";

const skip = await pgUnavailable();

test("migrations run concurrently from four nodes: each step applied exactly once", { skip }, async () => {
  const schema = randomSchema();
  const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: TEST_PG, max: 2 }));
  try {
    // Steps are plain CREATE TABLE / ADD COLUMN: a step run twice would fail, so all four
    // succeeding proves the lock serialized them.
    const applied = await Promise.all(pools.map((p) => migrate(p, schema)));
    assert.deepEqual(
      applied.flat().sort(),
      MIGRATIONS.map((m) => m.version),
      "every step ran once, in one of the four",
    );
    const rows = await pools[0]!.query(
      `SELECT version FROM ${schema}.nimbus_schema_migrations ORDER BY version`,
    );
    assert.deepEqual(
      rows.rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    assert.deepEqual(await migrate(pools[1]!, schema), [], "a later start applies nothing");
  } finally {
    await Promise.all(pools.map((p) => p.end()));
    await dropSchema(schema);
  }
});

test("a database at an older schema is brought up to date by the next open", { skip }, async () => {
  const schema = randomSchema();
  const pool = new pg.Pool({ connectionString: TEST_PG, max: 2 });
  try {
    assert.deepEqual(await migrate(pool, schema, MIGRATIONS.slice(0, 1)), [1]);
    const store = await PostgresStore.open({ connectionString: TEST_PG, schema });
    await store.writeBatch(
      [
        {
          id: "i",
          tenant: "t",
          fn: "f",
          version: 1,
          trigger: "async",
          start: 1,
          durationMs: 1,
          billedMs: 1,
          memoryMB: 128,
          gbSeconds: 0,
          cpuMs: 0,
          coldStart: false,
          status: 200,
          errorCode: null,
          firstByteMs: null,
          eventId: "e",
          attempt: 3,
          acquireMs: 9,
        },
      ],
      [],
    );
    assert.equal((await store.listInvocations("t", "f", 1))[0]?.attempt, 3, "step 2's columns exist");
    assert.equal((await store.getInvocation("t", "i"))?.acquireMs, 9, "step 4's column exists");
    assert.equal((await store.rollup("t", "f", 0, 60_000))[0]?.requests, 1, "step 4's rollup table exists");
    await store.close();
  } finally {
    await pool.end();
    await dropSchema(schema);
  }
});

test("a failing step rolls back, names itself, and leaves earlier steps recorded", { skip }, async () => {
  const schema = randomSchema();
  const pool = new pg.Pool({ connectionString: TEST_PG, max: 2 });
  try {
    const bad = [...MIGRATIONS, { version: 99, name: "broken", sql: "CREATE TABLE x (a int); SELECT nope" }];
    await assert.rejects(migrate(pool, schema, bad), /schema migration 99 \(broken\) failed/);
    const rows = await pool.query(`SELECT version FROM ${schema}.nimbus_schema_migrations ORDER BY version`);
    assert.deepEqual(
      rows.rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    const x = await pool.query("SELECT to_regclass($1) AS t", [`${schema}.x`]);
    assert.equal(x.rows[0].t, null, "the failed step's table was rolled back");
  } finally {
    await pool.end();
    await dropSchema(schema);
  }
});

test("a schema name outside [a-z0-9_] is refused before any SQL", async () => {
  await assert.rejects(
    PostgresStore.open({ connectionString: TEST_PG, schema: "x; DROP TABLE y" }),
    /must match/,
  );
});
