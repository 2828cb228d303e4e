/**
 * Bundling for the isolate executor: packages' Workers/browser builds are chosen over their
 * Node builds, and a Node built-in import is left for the deploy check to name.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { bundle } from "../src/build/bundle.ts";
import { cleanup } from "./helpers.ts";

describe("bundling for isolates", () => {
  it("resolves a package's worker build for isolates and its node build for processes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nimbus-isobundle-"));
    try {
      const pkg = join(dir, "node_modules", "dual");
      mkdirSync(pkg, { recursive: true });
      writeFileSync(
        join(pkg, "package.json"),
        JSON.stringify({
          name: "dual",
          exports: { ".": { worker: "./worker.js", node: "./node.js", default: "./node.js" } },
        }),
      );
      writeFileSync(join(pkg, "worker.js"), `export const flavour = "worker build";`);
      writeFileSync(
        join(pkg, "node.js"),
        `import { hostname } from "node:os"; export const flavour = "node build " + typeof hostname;`,
      );
      const entry = join(dir, "fn.ts");
      writeFileSync(
        entry,
        `import { flavour } from "dual"; export default { fetch: () => new Response(flavour) };`,
      );
      const isolate = await bundle(entry, { executor: "isolate" });
      assert.match(isolate.code, /worker build/);
      assert.doesNotMatch(
        isolate.code,
        /node:module|createRequire/,
        "no Node require shim in an isolate bundle",
      );
      const proc = await bundle(entry);
      assert.match(proc.code, /node build/);

      writeFileSync(
        entry,
        `import { readFileSync } from "node:fs"; export default { fetch: () => new Response(readFileSync("/x", "utf8")) };`,
      );
      const builtin = await bundle(entry, { executor: "isolate" });
      assert.match(builtin.code, /from "node:fs"/, "left in place for the deploy check to name");
    } finally {
      cleanup(dir);
    }
  });
});
