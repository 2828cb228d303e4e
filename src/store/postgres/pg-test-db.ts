/**
 * Test helper: a throwaway schema in the shared PostgreSQL (127.0.0.1:5432, database `test`,
 * or NIMBUS_TEST_PG). Absent on a laptop, the tests skip saying so; with CI=true they fail.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";

/** The database tests use. */
export const TEST_PG = process.env.NIMBUS_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/test";

/** Why PostgreSQL tests cannot run here, or undefined when they can (always undefined in CI). */
export async function pgUnavailable(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: TEST_PG, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query("SELECT 1");
    return undefined;
  } catch (err) {
    if (process.env.CI === "true")
      throw new Error(`PostgreSQL at ${TEST_PG} is required in CI`, { cause: err });
    return `no PostgreSQL at ${TEST_PG} (${(err as Error).message})`;
  } finally {
    await c.end().catch(() => {});
  }
}

/** A fresh random schema name (`nimbus_t_<hex>`). */
export function randomSchema(): string {
  return `nimbus_t_${randomBytes(6).toString("hex")}`;
}

/** Drops `schema` and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: TEST_PG });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}
