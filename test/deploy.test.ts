import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, FIXTURES, sleep, startTestServer, type TestServer } from "./helpers.ts";

/** Writes the version fixture with a tag into a temp dir and returns its path. */
function versionFile(dir: string, tag: string): string {
  const file = join(dir, "version.ts");
  writeFileSync(file, readFileSync(join(FIXTURES, "version.ts"), "utf8").replaceAll("VERSION_TAG", tag));
  return file;
}

describe("deploy, versions and rollback", () => {
  let s: TestServer;
  let work: string;
  before(async () => {
    s = await startTestServer();
    work = mkdtempSync(join(tmpdir(), "nimbus-fn-"));
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
    cleanup(work);
  });

  it("deploy through the CLI prints progress and the URL; the URL answers", async () => {
    const r = await s.cli(["deploy", join(FIXTURES, "echo.ts"), "--name", "hello"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /bundling .* ms/);
    assert.match(r.stderr, /uploading and activating … .* ms \(load check .* ms\)/);
    assert.match(r.stdout.trim(), new RegExp(`^${s.url}/fn/hello$`));
    const res = await fetch(`${s.url}/fn/hello`, { method: "POST", body: "hey" });
    assert.equal(await res.text(), "hey");
  });

  it("redeploying identical code and config gives back the same version; a change makes a new one", async () => {
    const a = await s.cli(["deploy", versionFile(work, "one"), "--name", "ver", "--json"]);
    assert.equal(a.code, 0, a.stderr);
    const ja = JSON.parse(a.stdout);
    assert.equal(ja.version.version, 1);
    assert.equal(ja.created, true);
    const again = JSON.parse(
      (await s.cli(["deploy", versionFile(work, "one"), "--name", "ver", "--json"])).stdout,
    );
    assert.equal(again.version.version, 1);
    assert.equal(again.created, false);
    const b = JSON.parse(
      (await s.cli(["deploy", versionFile(work, "two"), "--name", "ver", "--json"])).stdout,
    );
    assert.equal(b.version.version, 2);
    assert.equal(await (await fetch(`${s.url}/fn/ver`)).text(), "two");
    assert.equal(await (await fetch(`${s.url}/fn/ver@1`)).text(), "one");
    assert.equal(await (await fetch(`${s.url}/fn/ver@2/x`)).text(), "two");
    const versions = JSON.parse((await s.cli(["versions", "ver", "--json"])).stdout);
    assert.deepEqual(
      versions.versions.map((v: any) => [v.version, v.latest]),
      [
        [1, false],
        [2, true],
      ],
    );
    const rb = await s.cli(["rollback", "ver", "1"]);
    assert.equal(rb.code, 0, rb.stderr);
    assert.equal(await (await fetch(`${s.url}/fn/ver`)).text(), "one");
    const rbMissing = await s.cli(["rollback", "ver", "9"]);
    assert.equal(rbMissing.code, 1);
    assert.match(rbMissing.stderr, /NIMBUS_VERSION_NOT_FOUND/);
  });

  it("requests in flight during a deploy and a rollback finish on their version, without 5xx", async () => {
    await s.cli(["deploy", versionFile(work, "old"), "--name", "flight"]);
    const inflight = Array.from({ length: 4 }, () =>
      fetch(`${s.url}/fn/flight?ms=700`).then(async (r) => ({ status: r.status, body: await r.text() })),
    );
    await sleep(150);
    const d = await s.cli(["deploy", versionFile(work, "new"), "--name", "flight"]);
    assert.equal(d.code, 0, d.stderr);
    const after1 = await fetch(`${s.url}/fn/flight`);
    assert.equal(await after1.text(), "new");
    const results = await Promise.all(inflight);
    for (const r of results) assert.deepEqual(r, { status: 200, body: "old" });
    // And a rollback while v2 requests run.
    const during = Array.from({ length: 3 }, () =>
      fetch(`${s.url}/fn/flight?ms=500`).then(async (r) => ({ status: r.status, body: await r.text() })),
    );
    await sleep(100);
    assert.equal((await s.cli(["rollback", "flight", "1"])).code, 0);
    for (const r of await Promise.all(during)) assert.deepEqual(r, { status: 200, body: "new" });
    assert.equal(await (await fetch(`${s.url}/fn/flight`)).text(), "old");
  });

  it("a syntax error fails the deploy with file:line; the previous version keeps serving", async () => {
    await s.cli(["deploy", join(FIXTURES, "echo.ts"), "--name", "keep"]);
    const r = await s.cli(["deploy", join(FIXTURES, "bad-syntax.ts"), "--name", "keep"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NIMBUS_BUILD_FAILED/);
    assert.match(r.stderr, /bad-syntax\.ts:4:\d+/);
    const res = await fetch(`${s.url}/fn/keep`, { method: "POST", body: "still" });
    assert.equal(await res.text(), "still");
  });

  it("a missing handler fails the deploy and says what to export", async () => {
    const r = await s.deploy("keep", "no-handler.ts");
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "NIMBUS_DEPLOY_CHECK_FAILED");
    assert.match(r.body.error.message, /No handler found.*export default \{ fetch/);
    const versions = await s.api("GET", "/api/v1/functions/keep/versions");
    assert.equal(versions.body.versions.length, 1);
  });

  it("a module that throws at load fails the deploy with the error and its source file:line", async () => {
    const r = await s.cli(["deploy", join(FIXTURES, "throws-at-load.ts"), "--name", "keep"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NIMBUS_DEPLOY_CHECK_FAILED/);
    assert.match(r.stderr, /JSON/);
    assert.match(r.stderr, /throws-at-load\.ts:1:\d+/);
    assert.equal((await fetch(`${s.url}/fn/keep`, { method: "POST", body: "ok" })).status, 200);
  });

  it("invalid config fails the deploy naming the field (inline config and nimbus.json)", async () => {
    const inline = await s.deploy("cfg", "bad-config.ts");
    assert.equal(inline.status, 400);
    assert.equal(inline.body.error.code, "NIMBUS_BAD_CONFIG");
    assert.match(inline.body.error.message, /config\.memory/);
    const manifest = await s.deploy("cfg", "echo.ts", { timeout: "forever" });
    assert.equal(manifest.status, 400);
    assert.match(manifest.body.error.message, /config\.timeout/);
    const unknown = await s.deploy("cfg", "echo.ts", { memroy: 256 });
    assert.match(unknown.body.error.message, /config\.memroy: unknown field/);
    const name = await s.deploy("Bad_Name", "echo.ts");
    assert.equal(name.status, 400);
    assert.equal(name.body.error.code, "NIMBUS_BAD_FUNCTION_NAME");
  });

  it("a directory with nimbus.json deploys several functions, with an npm (CommonJS) dependency", async () => {
    const dir = join(work, "project");
    mkdirSync(join(dir, "node_modules/tiny-shout"), { recursive: true });
    writeFileSync(
      join(dir, "node_modules/tiny-shout/package.json"),
      JSON.stringify({ name: "tiny-shout", version: "1.0.0", main: "index.js" }),
    );
    writeFileSync(
      join(dir, "node_modules/tiny-shout/index.js"),
      'const os = require("node:os"); module.exports = (s) => s.toUpperCase() + "!" + (os.EOL === "\\n" ? "" : "?");',
    );
    writeFileSync(
      join(dir, "a.ts"),
      'import shout from "tiny-shout";\nexport default { fetch: () => new Response(shout("hello " + (process.env.WHO ?? ""))) };\n',
    );
    writeFileSync(
      join(dir, "b.ts"),
      "export const handler = async () => ({ statusCode: 200, body: 'bee' });\n",
    );
    writeFileSync(
      join(dir, "nimbus.json"),
      JSON.stringify({
        functions: { "fn-a": { entry: "a.ts", env: { WHO: "npm" } }, "fn-b": { entry: "b.ts", memory: 256 } },
      }),
    );
    const r = await s.cli(["deploy", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await (await fetch(`${s.url}/fn/fn-a`)).text(), "HELLO NPM!");
    assert.equal(await (await fetch(`${s.url}/fn/fn-b`)).text(), "bee");
    const info = JSON.parse((await s.cli(["info", "fn-b", "--json"])).stdout);
    assert.equal(info.version.config.memory, 256);
  });

  it("rm deletes a function", async () => {
    await s.cli(["deploy", join(FIXTURES, "echo.ts"), "--name", "gone"]);
    const r = await s.cli(["rm", "gone", "--json"]);
    assert.deepEqual(JSON.parse(r.stdout), { deleted: "gone" });
    assert.equal((await fetch(`${s.url}/fn/gone`)).status, 404);
    const again = await s.cli(["rm", "gone"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /NIMBUS_FN_NOT_FOUND/);
  });
});
