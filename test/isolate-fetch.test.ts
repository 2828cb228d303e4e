/**
 * `fetch` from isolate functions, performed by the isolate host: requests and bodies reach
 * the upstream, redirects are followed, a streamed upstream body (an SSE feed from a model)
 * is relayed to the client chunk by chunk, and the deadline and AbortSignal stop a fetch.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bundle } from "../src/build/bundle.ts";
import { serverCeiling } from "../src/executors/egress/ceiling.ts";
import { IsolateExecutor } from "../src/executors/isolate/executor.ts";
import { detectProtections } from "../src/executors/process/sandbox.ts";
import { type RunningServer, startServer } from "../src/server.ts";
import { cleanup, deployIsolateSource } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-isofetch-"));

async function deploy(s: RunningServer, name: string, source: string, config: Record<string, unknown> = {}) {
  const r = await deployIsolateSource(s, dir, name, source, config);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

describe("isolate fetch", () => {
  let s: RunningServer;
  let upstream: Server;
  let base = "";

  before(async () => {
    upstream = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/echo") {
        res.writeHead(200, { "content-type": "application/json", "set-cookie": ["u=1", "v=2"] });
        res.end(
          JSON.stringify({
            method: req.method,
            header: req.headers["x-from-fn"],
            body: Buffer.concat(chunks).toString(),
          }),
        );
      } else if (url.pathname === "/moved") {
        res.writeHead(301, { location: "/echo" }).end();
      } else if (url.pathname === "/sse") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        let i = 0;
        const tick = () => {
          res.write(`data: token${i}\n\n`);
          if (++i < 3) setTimeout(tick, 400);
          else res.end();
        };
        tick();
      } else if (url.pathname === "/hang") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("partial");
      } else res.writeHead(404).end("nope");
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
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
    upstream?.closeAllConnections();
    upstream?.close();
    cleanup(dir);
  });

  it("sends method, headers and body, and reads status, headers and JSON back", async () => {
    await deploy(
      s,
      "proxy",
      `export default {
        async fetch(request: Request) {
          const path = new URL(request.url).pathname;
          const r = await fetch("${base}" + path, { method: "POST", headers: { "x-from-fn": "yes" }, body: "payload" });
          return Response.json({ status: r.status, redirected: r.redirected, cookies: r.headers.getSetCookie(), json: await r.json() });
        },
      };`,
    );
    for (const path of ["/echo", "/moved"]) {
      const r = await fetch(`${s.url}/fn/proxy${path}`);
      assert.equal(r.status, 200);
      const body = (await r.json()) as any;
      assert.equal(body.status, 200);
      assert.deepEqual(body.cookies, ["u=1", "v=2"]);
      if (path === "/echo") {
        assert.deepEqual(body.json, { method: "POST", header: "yes", body: "payload" });
        assert.equal(body.redirected, false);
      } else {
        // A 301 after a POST continues as a GET, as browsers and undici do.
        assert.deepEqual(body.json, { method: "GET", header: "yes", body: "" });
        assert.equal(body.redirected, true);
      }
    }
  });

  it("relays a streamed upstream body to the client chunk by chunk", async () => {
    await deploy(
      s,
      "relay",
      `export default {
        async fetch() {
          const up = await fetch("${base}/sse");
          return new Response(up.body, { headers: { "content-type": "text/event-stream" } });
        },
      };`,
    );
    const t0 = Date.now();
    const r = await fetch(`${s.url}/fn/relay`);
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    const arrivals: { t: number; text: string }[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      arrivals.push({ t: Date.now() - t0, text: dec.decode(value) });
    }
    assert.equal(arrivals.map((a) => a.text).join(""), "data: token0\n\ndata: token1\n\ndata: token2\n\n");
    assert.ok(
      arrivals[0]!.t + 500 < arrivals.at(-1)!.t,
      `first at ${arrivals[0]!.t} ms, last at ${arrivals.at(-1)!.t} ms`,
    );
  });

  it("an AbortSignal stops a fetch whose body never ends", async () => {
    await deploy(
      s,
      "aborter",
      `export default {
        async fetch() {
          try {
            // On a loaded machine the abort may come before the head: either way it aborts.
            const r = await fetch("${base}/hang", { signal: AbortSignal.timeout(300) });
            await r.text();
            return new Response("finished?");
          } catch (e) {
            return new Response("aborted: " + (e as Error).name);
          }
        },
      };`,
    );
    const r = await fetch(`${s.url}/fn/aborter`);
    assert.equal(r.status, 200);
    assert.match(await r.text(), /^aborted: (TimeoutError|AbortError|TypeError)/);
  });

  it("a fetch still running at the function's timeout ends with the invocation", async () => {
    await deploy(
      s,
      "waits",
      `export const config = { timeout: "1s" };
       export default { async fetch() { const r = await fetch("${base}/hang"); return new Response(await r.text()); } };`,
    );
    const r = await fetch(`${s.url}/fn/waits`);
    assert.equal(r.status, 504);
    assert.equal(((await r.json()) as any).error.code, "NIMBUS_TIMEOUT");
  });
});

describe("isolate fetch: a function's own network policy", () => {
  it("egressFor gives one function its own rules; the others keep the executor's", async () => {
    const upstream = createServer((_req, res) => res.end("reached"));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
    const dataDir = mkdtempSync(join(tmpdir(), "nimbus-isoegress-"));
    const ex = new IsolateExecutor({
      dataDir,
      protections: detectProtections(),
      // The operator grants the loopback upstream; the executor's and functions' rules narrow it.
      egressCeiling: serverCeiling(["127.0.0.1/32"]),
      egress: { default: "deny" },
      egressFor: (spec) =>
        spec.functionName === "trusted" ? { default: "deny", allow: ["127.0.0.1"] } : undefined,
    });
    try {
      const file = join(dataDir, "egress-fn.ts");
      writeFileSync(
        file,
        `export default { async fetch() { try { return new Response(await (await fetch(${JSON.stringify(target)})).text()); } catch (e) { return new Response("refused: " + (e as Error).message); } } };`,
      );
      const b = await bundle(file, { executor: "isolate" });
      const codeDir = join(dataDir, "code");
      mkdirSync(codeDir);
      writeFileSync(join(codeDir, "index.mjs"), b.code);
      const answers: Record<string, string> = {};
      for (const functionName of ["trusted", "other"]) {
        const inst = await ex.start({
          functionName,
          tenant: "default",
          version: 1,
          codeDir,
          memoryMB: 128,
          // Generous: the first fetch of a host loads undici, seconds on a loaded machine.
          timeoutMs: 30_000,
          env: {},
        });
        inst.inflight++;
        answers[functionName] = await new Promise<string>((resolve, reject) => {
          let body = "";
          inst.invoke(
            {
              invocationId: functionName,
              method: "GET",
              url: "http://localhost/",
              headers: [],
              deadline: Date.now() + 30_000,
              sourceIp: "127.0.0.1",
              trigger: "http",
            },
            Buffer.alloc(0),
            {
              head() {},
              chunk(d) {
                body += d.toString();
              },
              end: () => resolve(body),
              fail: (e) => reject(e),
              log() {},
              done() {},
            },
          );
        });
        await inst.stop();
      }
      assert.equal(answers.trusted, "reached");
      assert.match(answers.other!, /^refused: .*not in the network policy's allow list/);
    } finally {
      await ex.close();
      upstream.close();
      cleanup(dataDir);
    }
  });
});
