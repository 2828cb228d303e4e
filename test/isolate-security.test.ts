/**
 * Security of the isolate executor: no path to host objects or the filesystem, fetch under
 * a deny policy, runaway functions (infinite loop, memory bomb) stopped while a neighbouring
 * function keeps answering, and the isolate host itself sandboxed, one per tenant.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { IsolateExecutor } from "../src/executors/isolate/executor.ts";
import { detectProtections } from "../src/executors/process/sandbox.ts";
import { type RunningServer, startServer } from "../src/server.ts";
import { cleanup, deployIsolateSource } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-isosec-"));

function deploy(s: RunningServer, name: string, source: string, config: Record<string, unknown> = {}) {
  return deployIsolateSource(s, dir, name, source, config);
}

async function get(
  s: RunningServer,
  path: string,
): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(`${s.url}${path}`);
  return { status: r.status, text: await r.text(), headers: r.headers };
}

const PROBE = `export default {
  async fetch() {
    const g = globalThis as any;
    const out: Record<string, unknown> = {};
    for (const name of ["process", "require", "module", "Buffer", "global", "__nimbus_init", "SharedArrayBuffer", "Atomics", "Deno", "Bun", "setImmediate"]) {
      out[name] = typeof g[name];
    }
    // Climb from objects the host handed in (errors, bytes, promises) to a foreign Function.
    const escapes: unknown[] = [];
    try { await fetch("http://127.0.0.1:1/"); } catch (e) { escapes.push((e as any).constructor.constructor("return typeof process")()); }
    const digest = await crypto.subtle.digest("SHA-256", new Uint8Array(1));
    escapes.push((digest as any).constructor.constructor("return typeof process")());
    escapes.push((new Uint8Array(1) as any).constructor.constructor("return typeof require")());
    escapes.push(Function("return typeof this.process")());
    let dynamicImport = "resolved";
    try { await import("node:" + "fs"); } catch { dynamicImport = "rejected"; }
    out.escapes = escapes;
    out.dynamicImport = dynamicImport;
    out.keys = Object.getOwnPropertyNames(globalThis).filter((k) => /nimbus|ivm|host|bridge/i.test(k));
    return Response.json(out);
  },
};`;

const FETCHER = `export default {
  async fetch(request: Request) {
    const target = new URL(request.url).searchParams.get("url")!;
    try {
      const r = await fetch(target);
      return new Response(r.status + " " + (await r.text()));
    } catch (e) {
      return new Response("refused: " + (e as Error).message, { status: 502 });
    }
  },
};`;

describe("isolate security", () => {
  let s: RunningServer;
  let upstream: Server;
  let port = 0;

  before(async () => {
    upstream = createServer((req, res) => {
      if (req.url === "/redirect") {
        res.writeHead(302, { location: `http://127.0.0.2:${port}/hello` }).end();
        return;
      }
      res.end("hello from upstream");
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    port = (upstream.address() as AddressInfo).port;
    s = await startServer({
      dataDir: join(dir, "data"),
      port: 0,
      prewarm: 1,
      log: () => {},
      isolateEgress: { default: "deny", allow: ["127.0.0.1"] },
      // The operator grants the test's loopback upstream (the server's ceiling).
      egressAllow: ["127.0.0.1/32"],
    });
  });
  after(async () => {
    await s?.close();
    upstream?.close();
    cleanup(dir);
  });

  it("a function reaches no host object, global or module system", async () => {
    assert.equal((await deploy(s, "probe", PROBE)).status, 200);
    const r = await get(s, "/fn/probe");
    assert.equal(r.status, 200, r.text);
    const out = JSON.parse(r.text);
    for (const name of [
      "process",
      "require",
      "module",
      "Buffer",
      "global",
      "__nimbus_init",
      "SharedArrayBuffer",
      "Atomics",
      "Deno",
      "Bun",
      "setImmediate",
    ]) {
      assert.equal(out[name], "undefined", `${name} must not exist in an isolate`);
    }
    assert.deepEqual(out.escapes, ["undefined", "undefined", "undefined", "undefined"]);
    assert.equal(out.dynamicImport, "rejected");
    assert.deepEqual(out.keys, []);
  });

  it('a bundle that imports Node built-ins fails the deploy, pointing at executor: "process"', async () => {
    const r = await deploy(
      s,
      "reads-files",
      `import { readFileSync } from "node:fs";
       export default { fetch: () => new Response(readFileSync("/etc/passwd", "utf8")) };`,
    );
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, "NIMBUS_DEPLOY_CHECK_FAILED");
    assert.match(r.body.error.message, /node:fs/);
    assert.match(r.body.error.message, /executor: "process"/);
    const missing = await get(s, "/fn/reads-files");
    assert.equal(missing.status, 404, "nothing was activated");
  });

  it("fetch goes through the host: allowed destinations answer, forbidden ones are refused", async () => {
    assert.equal((await deploy(s, "fetcher", FETCHER)).status, 200);
    const ok = await get(s, `/fn/fetcher?url=${encodeURIComponent(`http://127.0.0.1:${port}/hello`)}`);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.text, "200 hello from upstream");
    // Refusals are shown with listeners on loopback only (private, link-local and metadata
    // addresses are checked by the pure classifier tests, never by a connection attempt).
    for (const target of [
      `http://127.0.0.2:${port}/hello`,
      `http://[::1]:${port}/hello`,
      `http://127.0.0.1:${port}/redirect`,
    ]) {
      const r = await get(s, `/fn/fetcher?url=${encodeURIComponent(target)}`);
      assert.equal(r.status, 502, `${target}: ${r.text}`);
      assert.match(r.text, /^refused: .*(refused|not in the network policy|denied)/, `${target}: ${r.text}`);
    }
  });

  it("a function that subverts the runtime still cannot send the platform a malformed response", async () => {
    assert.equal(
      (
        await deploy(
          s,
          "forger",
          `export default {
            fetch(request: Request) {
              if (new URL(request.url).pathname === "/status") {
                // A fake Response with an impossible status.
                return Object.assign(Object.create(Response.prototype), { status: 42, headers: new Headers(), _bytes: new Uint8Array(0) });
              }
              // Headers that would split the HTTP response.
              (Headers.prototype as any)._pairs = () => [["x-ok", "1\\r\\nset-cookie: stolen=1"]];
              return new Response("forged");
            },
          };`,
        )
      ).status,
      200,
    );
    for (const path of ["/status", "/headers"]) {
      const r = await get(s, `/fn/forger${path}`);
      assert.equal(r.status, 502, `${path}: ${r.text}`);
      assert.equal(JSON.parse(r.text).error.code, "NIMBUS_BAD_RESPONSE");
      assert.equal(r.headers.get("set-cookie"), null);
    }
  });

  it("an infinite loop is stopped at the timeout while a neighbouring function keeps answering", async () => {
    assert.equal(
      (await deploy(s, "neighbour", `export default { fetch: () => new Response("alive") };`)).status,
      200,
    );
    assert.equal(
      (
        await deploy(
          s,
          "spin",
          `export const config = { timeout: "1500ms" }; export default { fetch() { for (;;) {} } };`,
        )
      ).status,
      200,
    );
    assert.equal((await get(s, "/fn/neighbour")).text, "alive");
    const spinning = get(s, "/fn/spin");
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const r = await get(s, "/fn/neighbour");
      assert.equal(r.status, 200);
      assert.equal(r.text, "alive");
      assert.equal(r.headers.get("x-nimbus-cold-start"), "0", "the neighbour's isolate was not disturbed");
      assert.ok(performance.now() - t0 < 1000, "the neighbour answers while the loop runs");
    }
    const r = await spinning;
    assert.equal(r.status, 504);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_TIMEOUT");
  });

  it("a CPU-bound loop past cpuMs is stopped with NIMBUS_CPU_LIMIT", async () => {
    assert.equal(
      (
        await deploy(
          s,
          "burn",
          `export const config = { cpuMs: 100, timeout: "20s" }; export default { fetch() { for (;;) {} } };`,
        )
      ).status,
      200,
    );
    const t0 = performance.now();
    const r = await get(s, "/fn/burn");
    assert.equal(r.status, 504);
    assert.equal(JSON.parse(r.text).error.code, "NIMBUS_CPU_LIMIT");
    assert.ok(performance.now() - t0 < 10_000, "stopped long before the wall-clock timeout");
  });

  it("invocations sharing an isolate share its CPU clock: none is charged the others' CPU", async () => {
    assert.equal(
      (
        await deploy(
          s,
          "shared",
          `export const config = { cpuMs: 300, concurrency: 4, maxInstances: 1, timeout: "20s" };
           export default { fetch() { const until = Date.now() + 100; let x = 0; while (Date.now() < until) x++; return new Response("done " + (x > 0)); } };`,
        )
      ).status,
      200,
    );
    await get(s, "/fn/shared"); // the isolate is up
    const answers = await Promise.all([1, 2, 3, 4].map(() => get(s, "/fn/shared")));
    for (const r of answers) assert.equal(r.status, 200, r.text);
    const ids = new Set(answers.map((r) => r.headers.get("x-nimbus-invocation-id")));
    let records: { id: string; cpuMs: number }[] = [];
    for (let i = 0; i < 50 && records.length < 4; i++) {
      const r = await fetch(`${s.url}/api/v1/functions/shared/invocations?limit=10`, {
        headers: { authorization: `Bearer ${s.adminKey}` },
      });
      records = ((await r.json()) as { invocations: { id: string; cpuMs: number }[] }).invocations.filter(
        (x) => ids.has(x.id),
      );
      if (records.length < 4) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(records.length, 4);
    const total = records.reduce((n, x) => n + x.cpuMs, 0);
    assert.ok(total > 300 && total < 700, `the four shares add up to the CPU used (${total} ms)`);
    for (const x of records) assert.ok(x.cpuMs < 300, `one invocation charged ${x.cpuMs} ms`);
  });

  it("a memory bomb is stopped with NIMBUS_MEMORY_LIMIT while the neighbour keeps its warm isolate", async () => {
    assert.equal(
      (
        await deploy(
          s,
          "bomb",
          `const hog: unknown[] = []; export const config = { memory: 64 };
           export default { fetch() { for (;;) hog.push(new Array(1_000_000).fill(Math.random())); } };`,
        )
      ).status,
      200,
    );
    assert.equal((await get(s, "/fn/neighbour")).text, "alive");
    const r = await get(s, "/fn/bomb");
    assert.equal(r.status, 502);
    const body = JSON.parse(r.text);
    assert.equal(body.error.code, "NIMBUS_MEMORY_LIMIT");
    assert.match(body.error.message, /64 MB/);
    const after = await get(s, "/fn/neighbour");
    assert.equal(after.text, "alive");
    assert.equal(
      after.headers.get("x-nimbus-cold-start"),
      "0",
      "the host process survived: the neighbour is still warm",
    );
  });
});

/** Processes under `pid` (inclusive), depth first. */
function descendants(pid: number): number[] {
  const out = [pid];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim();
      for (const k of kids ? kids.split(" ") : []) out.push(...descendants(Number(k)));
    }
  } catch {
    // Gone already.
  }
  return out;
}

describe("isolate host failure", () => {
  it("when a tenant's host process dies, its requests fail with NIMBUS_INSTANCE_CRASHED and the next ones get a new host", async () => {
    const s = await startServer({ dataDir: join(dir, "crash-data"), port: 0, prewarm: 1, log: () => {} });
    try {
      assert.equal(
        (
          await deploy(
            s,
            "sleeper",
            `export default { async fetch() { await new Promise((r) => setTimeout(r, 3000)); return new Response("late"); } };`,
          )
        ).status,
        200,
      );
      assert.equal(
        (await deploy(s, "quick", `export default { fetch: () => new Response("quick") };`)).status,
        200,
      );
      assert.equal((await get(s, "/fn/quick")).text, "quick");
      const hosts = descendants(process.pid).filter((p) => {
        try {
          const argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
          return /node$/.test(argv[0] ?? "") && argv.some((a) => a.endsWith("/host.mjs"));
        } catch {
          return false;
        }
      });
      assert.equal(hosts.length, 1, "one host for the default tenant");
      const pending = get(s, "/fn/sleeper");
      await new Promise((r) => setTimeout(r, 300));
      process.kill(hosts[0]!, "SIGKILL");
      const r = await pending;
      assert.equal(r.status, 502);
      assert.equal(JSON.parse(r.text).error.code, "NIMBUS_INSTANCE_CRASHED");
      const again = await get(s, "/fn/quick");
      assert.equal(again.status, 200, again.text);
      assert.equal(again.text, "quick");
      assert.equal(again.headers.get("x-nimbus-cold-start"), "1", "a new host, a new isolate");
    } finally {
      await s.close();
    }
  });
});

describe("isolate hosts", () => {
  const protections = detectProtections();
  const sandboxed = protections.bwrap && protections.cgroups !== null;

  it("tenants get separate host processes, each in its own namespaces and cgroup", {
    skip: sandboxed ? false : `needs bubblewrap and cgroups (off here: ${protections.off.join("; ")})`,
  }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "nimbus-isohosts-"));
    const ex = new IsolateExecutor({ dataDir, protections, warmTenants: ["acme", "globex"] });
    try {
      await ex.waitReady("acme");
      await ex.waitReady("globex");
      const stats = ex.hostStats();
      assert.ok(stats.acme && stats.globex);
      assert.notEqual(stats.acme.pid, stats.globex.pid);
      const mine = readlinkSync("/proc/self/ns/mnt");
      const hostNs: string[] = [];
      for (const tenant of ["acme", "globex"]) {
        const pid = stats[tenant]!.pid;
        const host = descendants(pid).find((p) => {
          try {
            // The node process itself, not the sh/bwrap wrappers that carry the same argv.
            const argv = readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0");
            return /node$/.test(argv[0] ?? "") && argv.some((a) => a.endsWith("/host.mjs"));
          } catch {
            return false;
          }
        });
        assert.ok(host, `the ${tenant} host process runs`);
        const ns = readlinkSync(`/proc/${host}/ns/mnt`);
        assert.notEqual(ns, mine, "the host has its own mount namespace (bubblewrap)");
        hostNs.push(ns);
        assert.match(
          readFileSync(`/proc/${host}/cgroup`, "utf8"),
          new RegExp(`nimbus/iso-${tenant}-`),
          "the host is in its cgroup",
        );
      }
      assert.notEqual(hostNs[0], hostNs[1], "no two tenants share a sandbox");
    } finally {
      await ex.close();
      cleanup(dataDir);
    }
  });
});
