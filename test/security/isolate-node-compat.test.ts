/**
 * The Node compatibility subset as an attack surface: `process` inside an isolate is the
 * platform's stand-in, not the host's process — it holds the function's own env and nothing
 * of the host, cannot exit or reach host modules — and the AsyncLocalStorage patch of
 * Promise.prototype.then stays inside the function's own isolate.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningServer, startServer } from "../../src/server.ts";
import { cleanup, deployIsolateSource } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-isonode-"));

const PROBE = `import { AsyncLocalStorage } from "node:async_hooks";
const als = new AsyncLocalStorage();
export default {
  async fetch(request: Request) {
    const out: Record<string, unknown> = {};
    out.env = process.env;
    out.binding = typeof (process as any).binding;
    out.dlopen = typeof (process as any).dlopen;
    out.mainModule = typeof (process as any).mainModule;
    try { process.exit(1); out.exit = "exited?"; } catch (e) { out.exit = (e as Error).message; }
    out.hostEnv = Object.keys(process.env).filter((k) => /^(PATH|HOME|NIMBUS_|NODE_)/.test(k));
    out.escape = (process as any).constructor.constructor("return typeof require")();
    out.als = await als.run("mine", async () => { await null; return als.getStore(); });
    return Response.json(out);
  },
};`;

const NEIGHBOUR = `export default {
  async fetch() {
    // A function without the flag: Promise.prototype.then is V8's own in its isolate.
    return new Response(String(Promise.prototype.then).includes("[native code]") ? "native then" : "patched then");
  },
};`;

describe("isolate Node compatibility abuse", () => {
  let s: RunningServer;
  before(async () => {
    s = await startServer({ dataDir: join(dir, "data"), port: 0, prewarm: 1, log: () => {} });
    const p = await deployIsolateSource(s, dir, "probe", PROBE, {
      compatibility: ["nodejs"],
      env: { OWN: "1" },
    });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    const n = await deployIsolateSource(s, dir, "neighbour", NEIGHBOUR);
    assert.equal(n.status, 200, JSON.stringify(n.body));
  });
  after(async () => {
    await s?.close();
    cleanup(dir);
  });

  it("attack: a function reads the host's environment and process through `process` → only its own env", async () => {
    const r = await fetch(`${s.url}/fn/probe`);
    assert.equal(r.status, 200);
    const out = await r.json();
    assert.deepEqual(out.hostEnv, []);
    assert.equal(out.env.OWN, "1");
    assert.equal(out.binding, "undefined");
    assert.equal(out.dlopen, "undefined");
    assert.equal(out.mainModule, "undefined");
    assert.match(out.exit, /not supported in the isolate executor/);
    assert.equal(out.escape, "undefined");
    assert.equal(out.als, "mine");
  });

  it("attack: a compat function patches Promise.prototype.then → its neighbours' isolates keep V8's own", async () => {
    await fetch(`${s.url}/fn/probe`);
    const r = await fetch(`${s.url}/fn/neighbour`);
    assert.equal(await r.text(), "native then");
  });
});
