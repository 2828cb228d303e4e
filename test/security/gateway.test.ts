/**
 * Issue 7, point 6 (gateway): a caller's malformed URL is a catalogued 400, never a 500; a
 * function cannot pass its own headers off as the platform's (`x-nimbus-*`).
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { NimbusError } from "../../src/errors.ts";
import { parseFunctionPath } from "../../src/gateway/gateway.ts";
import { cleanup, deployIsolateSource, startTestServer, type TestServer } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-gwsec-"));
after(() => cleanup(dir));

/** Sends one raw HTTP/1.1 request (bytes as given) to the server; returns the status line and body. */
function rawRequest(url: string, target: Buffer): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        Buffer.concat([
          Buffer.from("GET "),
          target,
          Buffer.from(` HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`),
        ]),
      );
    });
    let out = "";
    socket.setEncoding("latin1");
    socket.on("data", (s: string) => {
      out += s;
    });
    socket.on("end", () => resolve(out));
    socket.on("error", reject);
  });
}

const SPOOF = `export default {
  fetch: () => new Response("spoofed", {
    headers: { "x-nimbus-version": "999", "X-Nimbus-Cold-Start": "1", "x-nimbus-billed-ms": "0", "x-mine": "kept" },
  }),
};`;

describe("the gateway against a hostile caller or function", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ args: ["--queue-wait", "120000"] });
    for (const [name, src] of [
      ["neighbour", `export default { fetch: () => new Response("alive") };`],
      ["spoof", SPOOF],
    ] as const) {
      const file = join(dir, `${name}.ts`);
      writeFileSync(file, src);
      const r = await s.deploy(name, file);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const r = await deployIsolateSource(s, dir, "spoof-iso", SPOOF);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  });
  after(async () => {
    await s?.stop();
    if (s) cleanup(s.dataDir);
  });

  test("parseFunctionPath: malformed percent-encoding and invalid UTF-8 are catalogued 400s", () => {
    for (const url of ["/fn/%ZZ", "/fn/%", "/fn/abc%E0%A4%A", "/fn/%C3%28/x", "/fn/%FF@1"]) {
      assert.throws(
        () => parseFunctionPath(url),
        (err: unknown) => err instanceof NimbusError && err.status === 400,
        url,
      );
    }
  });

  for (const path of ["/fn/%ZZ", "/fn/%C3%28", "/fn/ab%ED%A0%80cd/x", "/fn/%"]) {
    test(`attack: caller requests ${path} → catalogued 400, not 500, neighbour answers`, async () => {
      const r = await fetch(`${s.url}${path}`);
      const body = (await r.json()) as { error: { code: string } };
      assert.equal(r.status, 400);
      assert.equal(body.error.code, "NIMBUS_BAD_FUNCTION_NAME");
      const n = await fetch(`${s.url}/fn/neighbour`);
      assert.equal(await n.text(), "alive");
    });
  }

  test("attack: caller sends raw non-UTF-8 bytes in a function name → 400, neighbour answers", async () => {
    const out = await rawRequest(
      s.url,
      Buffer.from([...Buffer.from("/fn/ab"), 0xff, 0xfe, ...Buffer.from("/x")]),
    );
    assert.match(out, /^HTTP\/1\.1 400 /);
    assert.doesNotMatch(out, /NIMBUS_INTERNAL/);
    const n = await fetch(`${s.url}/fn/neighbour`);
    assert.equal(await n.text(), "alive");
  });

  for (const name of ["spoof", "spoof-iso"]) {
    test(`attack: function (${name === "spoof" ? "process" : "isolate"}) sets x-nimbus-* response headers → dropped, the platform's own stay`, async () => {
      const r = await fetch(`${s.url}/fn/${name}`);
      assert.equal(await r.text(), "spoofed");
      assert.equal(r.headers.get("x-mine"), "kept");
      assert.equal(r.headers.get("x-nimbus-billed-ms"), null);
      assert.equal(r.headers.get("x-nimbus-version"), "1");
      assert.match(r.headers.get("x-nimbus-cold-start") ?? "", /^[01]$/);
      assert.ok(
        !/,/.test(r.headers.get("x-nimbus-cold-start") ?? ""),
        "one cold-start header, the platform's",
      );
      assert.ok(r.headers.get("x-nimbus-invocation-id"));
      const n = await fetch(`${s.url}/fn/neighbour`);
      assert.equal(await n.text(), "alive");
    });
  }
});
