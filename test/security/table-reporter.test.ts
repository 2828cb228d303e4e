import assert from "node:assert/strict";
import { it } from "node:test";
import { parseAttackName, renderTable } from "./table-reporter.ts";

it("reads attack test names into a table row", () => {
  assert.deepEqual(parseAttackName("attack: status 42 in a response head → 502, server keeps serving"), {
    attack: "status 42 in a response head",
    result: "502, server keeps serving",
  });
  assert.equal(parseAttackName("reports which protections are active"), undefined);
  const table = renderTable([{ file: "frames", attack: "a|b", result: "c", outcome: "contained" }]);
  assert.match(table, /\| frames \| a\\\|b \| c \| contained \|/);
});
