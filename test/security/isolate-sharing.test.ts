/**
 * Isolation "context" (functions of one tenant sharing a V8 isolate, one context each) as an
 * attack surface: a function must not read a neighbour's globals or environment, and a
 * function that breaks a limit (heap, CPU, timeout) in a shared isolate must not take its
 * neighbours down silently: they are stopped with it (V8 cannot stop one context), each told
 * why in its log, and serve again on their next request. A function configured with
 * `isolation: "isolate"` keeps an isolate of its own and is not touched.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningServer, startServer } from "../../src/server.ts";
import { cleanup, deployIsolateSource } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-isoshare-"));

async function get(s: RunningServer, path: string) {
  const r = await fetch(`${s.url}${path}`);
  return { status: r.status, text: await r.text(), headers: r.headers };
}

async function deploy(s: RunningServer, name: string, source: string, config: Record<string, unknown> = {}) {
  const r = await deployIsolateSource(s, dir, name, source, { memory: 64, ...config });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function logs(s: RunningServer, name: string): Promise<string[]> {
  const r = await fetch(`${s.url}/api/v1/functions/${name}/logs?limit=100`, {
    headers: { authorization: `Bearer ${s.adminKey}` },
  });
  return ((await r.json()) as { lines: { msg: string }[] }).lines.map((l) => l.msg);
}

async function until(what: string, fn: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for: ${what}`);
}

const ALIVE = `let n = 0; export default { fetch: () => new Response("alive " + ++n) };`;

describe("isolate sharing (isolation: context)", () => {
  let s: RunningServer;
  before(async () => {
    s = await startServer({
      dataDir: join(dir, "data"),
      port: 0,
      prewarm: 1,
      log: () => {},
      isolation: "context",
    });
  });
  after(async () => {
    await s?.close();
    cleanup(dir);
  });

  it("attack: reads a neighbour's globals and env in the shared isolate → sees only its own", async () => {
    await deploy(
      s,
      "keeper",
      `export default { fetch(_r: Request, env: Record<string, string>) { (globalThis as any).secret = env.TOKEN; return new Response("kept " + env.TOKEN); } };`,
      { env: { TOKEN: "keeper-secret" } },
    );
    await deploy(
      s,
      "snoop",
      `export default { fetch(_r: Request, env: Record<string, string>) { return Response.json({ global: typeof (globalThis as any).secret, env: Object.keys(env) }); } };`,
    );
    assert.equal((await get(s, "/fn/keeper")).text, "kept keeper-secret");
    const r = await get(s, "/fn/snoop");
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.text), { global: "undefined", env: [] });
  });

  it("attack: memory bomb in a shared isolate → NIMBUS_MEMORY_LIMIT; the neighbour is stopped too, told why, and serves again", async () => {
    await deploy(s, "calm", ALIVE);
    await deploy(s, "own", ALIVE, { isolation: "isolate" });
    await deploy(
      s,
      "bomb",
      `const hog: unknown[] = []; export default { fetch() { for (;;) hog.push(new Array(1_000_000).fill(Math.random())); } };`,
    );
    assert.equal((await get(s, "/fn/calm")).text, "alive 1");
    assert.equal((await get(s, "/fn/own")).text, "alive 1");
    const r = await get(s, "/fn/bomb");
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_MEMORY_LIMIT");
    await until("the neighbour's log says why it was stopped", async () =>
      (await logs(s, "calm")).some((l) =>
        /shared .*isolation "context"|isolate this function shared/.test(l),
      ),
    );
    const again = await get(s, "/fn/calm");
    assert.equal(again.status, 200);
    assert.equal(again.text, "alive 1", "a fresh context: the old one went with the shared isolate");
    assert.equal(again.headers.get("x-nimbus-cold-start"), "1");
    const own = await get(s, "/fn/own");
    assert.equal(own.text, "alive 2", 'isolation: "isolate" kept its own isolate (and state)');
    assert.equal(own.headers.get("x-nimbus-cold-start"), "0");
  });

  /** A runaway in a shared isolate: its caller gets `status`/`code`, the neighbour's log `says`, and it serves again. */
  async function runawayStopsNeighbour(
    neighbour: string,
    runaway: string,
    config: Record<string, unknown>,
    expected: { status: number; code: string; says: (line: string) => boolean },
  ): Promise<void> {
    await deploy(s, neighbour, ALIVE);
    await deploy(s, runaway, `export default { fetch() { for (;;) {} } };`, config);
    assert.equal((await get(s, `/fn/${neighbour}`)).text, "alive 1");
    const r = await get(s, `/fn/${runaway}`);
    assert.equal(r.status, expected.status);
    assert.equal(JSON.parse(r.text).error.code, expected.code);
    await until("the neighbour's log says why it was stopped", async () =>
      (await logs(s, neighbour)).some(expected.says),
    );
    const again = await get(s, `/fn/${neighbour}`);
    assert.equal(again.status, 200);
    assert.equal(again.text, "alive 1", "a fresh context in a new shared isolate");
  }

  it("attack: CPU loop past cpuMs in a shared isolate → NIMBUS_CPU_LIMIT; the neighbour's log names the culprit", async () => {
    await runawayStopsNeighbour(
      "calm2",
      "burn",
      { cpuMs: 100, timeout: "20s" },
      {
        status: 504,
        code: "NIMBUS_CPU_LIMIT",
        says: (l) => l.includes("'burn'") && l.includes("NIMBUS_CPU_LIMIT"),
      },
    );
  });

  it("attack: endless loop until the timeout in a shared isolate → NIMBUS_TIMEOUT; the stuck isolate is stopped and the neighbour serves again", async () => {
    await runawayStopsNeighbour(
      "calm3",
      "spin",
      { timeout: "1500ms" },
      { status: 504, code: "NIMBUS_TIMEOUT", says: (l) => l.includes("'spin'") && l.includes("stayed busy") },
    );
  });

  it('a bad isolation value is refused with NIMBUS_BAD_CONFIG naming "isolate" and "context"', async () => {
    const r = await deployIsolateSource(s, dir, "badiso", ALIVE, { isolation: "thread" });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "NIMBUS_BAD_CONFIG");
    assert.match(r.body.error.message, /"isolate".*"context"/);
  });
});
