/**
 * The Web-standards conformance suite (test/conformance/): the same WPT-derived subtests run
 * inside a deployed function on both executors; every subtest that Node's own implementation
 * passes (process executor) must pass on the isolate executor too, except the differences
 * listed in test/conformance/known.ts (each with its reason, mirrored in the isolate README).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { KNOWN_DIFFERENCES } from "./conformance/known.ts";
import { dataDirs, formatTable, runConformance } from "./conformance/run.ts";

test("conformance: the isolate executor passes every WPT-derived subtest Node passes", {
  timeout: 170_000,
}, async (t) => {
  const c = await runConformance();
  t.diagnostic(`\n${formatTable(c.rows)}`);
  if (c.missing.length) {
    t.diagnostic(
      `WPT data files not found (${c.missing.join(", ")}; looked in ${dataDirs().join(", ")}): their subtests did not run`,
    );
  }
  assert.ok(c.rows.length >= 10, "every area reported");
  for (const r of c.rows) {
    assert.ok(r.total > 0, `${r.area} has subtests`);
    const known = KNOWN_DIFFERENCES[r.area] ?? {};
    const unexpected = r.onlyProcess.filter(([name]) => !(name in known));
    assert.deepEqual(unexpected, [], `${r.area}: subtests Node passes but the isolate fails`);
    assert.ok(
      r.process === 0 || (r.process - r.onlyProcess.length) / r.process >= 0.99,
      `${r.area}: at least 99% of Node's passes`,
    );
  }
});
