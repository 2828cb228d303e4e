/**
 * Node compatibility on the isolate executor (`compatibility: ["nodejs"]`): the supported
 * built-ins give the same answers as Node's own on the process executor, AsyncLocalStorage
 * keeps each request's store across awaits, timers and concurrent requests, and a function
 * that does not opt in, or that imports a built-in outside the subset, still fails its deploy.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bundle } from "../src/build/bundle.ts";
import { type RunningServer, startServer } from "../src/server.ts";
import { cleanup, deployIsolateSource, FIXTURES } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-nodecompat-"));
const SUBSET = readFileSync(join(FIXTURES, "node-compat/subset.ts"), "utf8");

const ALS = `import { AsyncLocalStorage } from "node:async_hooks";
const als = new AsyncLocalStorage<string>();
const log = () => als.getStore() ?? "none";
async function step(ms: number) { await new Promise((r) => setTimeout(r, ms)); return log(); }
export default {
  fetch(request: Request) {
    const id = new URL(request.url).searchParams.get("id")!;
    const ms = Number(new URL(request.url).searchParams.get("ms"));
    return als.run(id, async () => {
      const seen = [log()];
      seen.push(await step(ms));
      for await (const x of (async function* () { yield await step(1); })()) seen.push(x);
      seen.push(await Promise.all([step(ms), step(1)]).then((v) => v.join("+")));
      try { await Promise.reject(new Error("x")); } catch { seen.push(log()); }
      queueMicrotask(() => {});
      return Response.json({ id, seen, outside: await new Promise((r) => als.exit(() => r(log()))) });
    });
  },
};`;

async function deployProcess(
  s: RunningServer,
  name: string,
  source: string,
  config: Record<string, unknown>,
) {
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, source);
  const b = await bundle(file, { executor: "process" });
  const r = await fetch(`${s.url}/api/v1/functions/${name}/versions`, {
    method: "POST",
    headers: { authorization: `Bearer ${s.adminKey}`, "content-type": "application/json" },
    body: JSON.stringify({
      code: b.code,
      sourceMap: b.sourceMap,
      config: { executor: "process", ...config },
    }),
  });
  return { status: r.status, body: await r.json() };
}

describe("Node compatibility on the isolate executor", () => {
  let s: RunningServer;
  before(async () => {
    s = await startServer({
      dataDir: join(dir, "data"),
      port: 0,
      prewarm: 1,
      log: () => {},
      queueWaitMs: 120_000,
    });
  });
  after(async () => {
    await s?.close();
    cleanup(dir);
  });

  it("buffer, events, util, assert, path, string_decoder, async_hooks, process.env answer as Node's own", async () => {
    const config = { compatibility: ["nodejs"], env: { GREETING: "hi" } };
    const iso = await deployIsolateSource(s, dir, "subset", SUBSET, config);
    assert.equal(iso.status, 200, JSON.stringify(iso.body));
    const proc = await deployProcess(s, "subset-node", SUBSET, config);
    assert.equal(proc.status, 200, JSON.stringify(proc.body));
    const a = await (await fetch(`${s.url}/fn/subset`)).json();
    const b = await (await fetch(`${s.url}/fn/subset-node`)).json();
    assert.deepEqual(a, b);
    assert.equal(a.env, "hi");
    assert.equal(a.afterAwait, "req-1");
    assert.equal(a.timer, "req-1");
    assert.equal(a.assert, "AssertionError");
    assert.equal(a.decoder, "|€");
  });

  it("AsyncLocalStorage keeps each request's store across awaits while requests overlap", async () => {
    const r = await deployIsolateSource(s, dir, "als", ALS, { compatibility: ["nodejs"], concurrency: 8 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const ids = ["a", "b", "c", "d", "e", "f"];
    const answers = await Promise.all(
      ids.map(async (id, i) => (await fetch(`${s.url}/fn/als?id=${id}&ms=${(6 - i) * 15}`)).json()),
    );
    for (const [i, body] of answers.entries()) {
      const id = ids[i]!;
      assert.deepEqual(body, { id, seen: [id, id, id, `${id}+${id}`, id], outside: "none" });
    }
  });

  it("a function that imports node:events without opting in fails its deploy, naming the flag", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "no-flag",
      `import { EventEmitter } from "node:events"; export default { fetch: () => new Response(String(new EventEmitter())) };`,
    );
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "NIMBUS_DEPLOY_CHECK_FAILED");
    assert.match(r.body.error.message, /node:events/);
    assert.match(r.body.error.message, /"compatibility": \["nodejs"\]/);
  });

  it("a built-in outside the subset still fails the deploy with the usual message", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "fs-flag",
      `import { readFileSync } from "node:fs"; export default { fetch: () => new Response(readFileSync("/etc/hostname")) };`,
      { compatibility: ["nodejs"] },
    );
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "NIMBUS_DEPLOY_CHECK_FAILED");
    assert.match(r.body.error.message, /'node:fs', a Node.js built-in/);
    assert.match(r.body.error.message, /executor: "process"/);
  });

  it("an unknown compatibility flag is a config error", async () => {
    const r = await deployIsolateSource(s, dir, "bad-flag", `export default () => new Response("x");`, {
      compatibility: ["bun"],
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "NIMBUS_BAD_CONFIG");
    assert.match(r.body.error.message, /config\.compatibility/);
  });

  it("without the flag a function sees no process or Buffer global", async () => {
    const r = await deployIsolateSource(
      s,
      dir,
      "plain",
      `export default () => new Response(typeof process + " " + typeof Buffer);`,
    );
    assert.equal(r.status, 200);
    assert.equal(await (await fetch(`${s.url}/fn/plain`)).text(), "undefined undefined");
  });
});
