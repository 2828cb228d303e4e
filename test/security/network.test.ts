/**
 * Network isolation: process instances and isolate hosts have their own network namespace;
 * the only way out is the platform's egress proxy, which applies one policy (the server's,
 * as a ceiling) at connect time. Every listener here is one the test starts on loopback.
 */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, test } from "node:test";
import { serverCeiling } from "../../src/executors/egress/ceiling.ts";
import { EgressProxy } from "../../src/executors/egress/proxy.ts";
import { egressOpen, egressResolve } from "../../src/runtime/egress-client.ts";
import { cleanup, deployIsolateSource, sleep, startTestServer, type TestServer } from "../helpers.ts";

const ISOLATE_FETCHER = `
export default {
  async fetch(request: Request) {
    const target = new URL(request.url).searchParams.get("url")!;
    try {
      const res = await fetch(target);
      return new Response("reached: " + (await res.text()));
    } catch (err) {
      return new Response("refused: " + String((err as Error).message));
    }
  },
};
`;

/** An HTTP listener on `host` that counts the requests it got. */
async function listener(host: string, handler?: (path: string) => [number, Record<string, string>, string]) {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    hits.push(req.url ?? "");
    const [status, headers, body] = handler?.(req.url ?? "") ?? [200, {}, `secret from ${host}`];
    res.writeHead(status, headers).end(body);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return { server, hits, port, url: `http://${host}:${port}/` };
}

describe("network isolation (operator grant: 127.0.0.2/32 only)", () => {
  let s: TestServer;
  let l1: Awaited<ReturnType<typeof listener>>;
  let l2: Awaited<ReturnType<typeof listener>>;
  let redirector: Awaited<ReturnType<typeof listener>>;
  const dir = mkdtempSync(join(tmpdir(), "nimbus-netsec-"));
  const call = async (fn: string, path: string) => (await fetch(`${s.url}/fn/${fn}${path}`)).text();
  const neighbourOk = async () => assert.equal(await call("neighbour", "/ok"), "ok");

  before(async () => {
    l1 = await listener("127.0.0.1");
    l2 = await listener("127.0.0.2");
    // A granted address that redirects to a refused one: each hop is a new, checked connection.
    redirector = await listener("127.0.0.2", () => [302, { location: l1.url }, ""]);
    // A loaded machine can take seconds per cold start: wait for instances, never throttle.
    s = await startTestServer({ args: ["--egress-allow", "127.0.0.2/32", "--queue-wait", "120000"] });
    for (const name of ["attacker", "neighbour"]) {
      const r = await s.deploy(name, "attacker.ts");
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const iso = await deployIsolateSource(s, dir, "iso", ISOLATE_FETCHER);
    assert.equal(iso.status, 200, JSON.stringify(iso.body));
  });
  after(async () => {
    await s.stop();
    for (const l of [l1, l2, redirector]) l.server.close();
    cleanup(s.dataDir);
    cleanup(dir);
  });

  it("attack: process function fetches / net.connects / http.gets a loopback listener → refused", async () => {
    const port = l1.port;
    const tries = [
      await call("attacker", `/fetch?url=${encodeURIComponent(l1.url)}`),
      await call("attacker", `/connect?host=127.0.0.1&port=${port}`),
      await call("attacker", `/http?url=${encodeURIComponent(`http://localhost:${port}/`)}`),
      await call("attacker", `/connect?host=localhost&port=${port}`),
      await call("attacker", `/connect?host=::ffff:127.0.0.1&port=${port}`),
    ];
    for (const t of tries) assert.match(t, /^refused: .*(private, loopback|refused)/, t);
    assert.equal(l1.hits.length, 0, "the listener on 127.0.0.1 got no request");
    await neighbourOk();
  });

  it("attack: process function resolves a name that points at loopback → no address", async () => {
    const r = await call("attacker", "/lookup?host=localhost");
    assert.match(r, /^refused: .*loopback/);
    await neighbourOk();
  });

  it("attack: process function calls the control API on 127.0.0.1 → refused", async () => {
    const r = await call("attacker", `/fetch?url=${encodeURIComponent(`${s.url}/api/v1/health`)}`);
    assert.match(r, /^refused: /);
    const c = await call("attacker", `/connect?host=127.0.0.1&port=${new URL(s.url).port}`);
    assert.match(c, /^refused: /);
    await neighbourOk();
  });

  it("attack: process function bypasses the proxy with a raw socket → kernel has no route", async () => {
    // The net.Socket patch is convenience; underneath, the namespace has only its own
    // loopback. A UDP datagram (no proxy at all) to a host listener never arrives.
    const udp = createSocket("udp4");
    const got: string[] = [];
    udp.on("message", (m) => got.push(m.toString()));
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
    const port = (udp.address() as AddressInfo).port;
    const r = await call("attacker", `/udp?host=127.0.0.1&port=${port}`);
    assert.match(r, /^(sent|refused)/);
    await sleep(300);
    udp.close();
    assert.deepEqual(got, [], "the datagram stayed inside the instance's namespace");
    await neighbourOk();
  });

  it("attack: process function follows a redirect from a granted host to loopback → refused", async () => {
    const r = await call("attacker", `/fetch?url=${encodeURIComponent(redirector.url)}`);
    assert.match(r, /^refused: /);
    assert.equal(redirector.hits.length, 1, "the granted first hop was reached");
    assert.equal(l1.hits.length, 0, "the redirect target was not");
  });

  it("a process function reaches exactly the operator's grant (127.0.0.2)", async () => {
    const r = await call("attacker", `/fetch?url=${encodeURIComponent(l2.url)}`);
    assert.equal(r, "reached: secret from 127.0.0.2");
    const c = await call("attacker", `/connect?host=127.0.0.2&port=${l2.port}`);
    assert.match(c, /^reached: HTTP\/1\.1 200/);
  });

  it("attack: isolate function fetches loopback, the control API, or a redirect to loopback → refused", async () => {
    const q = (u: string) => call("iso", `?url=${encodeURIComponent(u)}`);
    assert.match(await q(l1.url), /^refused: /);
    assert.match(await q(`http://localhost:${l1.port}/`), /^refused: /);
    assert.match(await q(`${s.url}/api/v1/health`), /^refused: /);
    assert.match(await q(redirector.url), /^refused: /);
    assert.equal(l1.hits.length, 0);
    assert.equal(await q(l2.url), "reached: secret from 127.0.0.2");
    await neighbourOk();
  });

  it("attack: function widens its own policy past the server's → deploy refused", async () => {
    const wide = await s.deploy("wide", "attacker.ts", { network: { allow: ["10.0.0.0/8"] } });
    assert.equal(wide.status, 400);
    assert.match(wide.body.error.message, /config\.network\.allow: 10\.0\.0\.0\/8 .*--egress-allow/);
    const loop = await deployIsolateSource(s, dir, "loop", ISOLATE_FETCHER, {
      network: { allow: ["127.0.0.0/8"] },
    });
    assert.equal(loop.status, 400);
    // Inside the grant is fine, and a narrowing policy applies on top of the ceiling.
    const ok = await s.deploy("narrow", "attacker.ts", {
      network: { default: "deny", allow: ["127.0.0.2"] },
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(
      await call("narrow", `/fetch?url=${encodeURIComponent(l2.url)}`),
      "reached: secret from 127.0.0.2",
    );
    const closed = await s.deploy("closed", "attacker.ts", { network: { default: "deny" } });
    assert.equal(closed.status, 200);
    assert.match(await call("closed", `/fetch?url=${encodeURIComponent(l2.url)}`), /^refused: /);
    await neighbourOk();
  });
});

test("attack: DNS answer for a public-looking name points at loopback → proxy refuses", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nimbus-proxy-"));
  const l = await listener("127.0.0.1");
  const proxy = new EgressProxy({
    dir: join(dir, "egress"),
    insideDir: join(dir, "egress"),
    ceiling: serverCeiling([]),
    // A resolver under the test's control: the rebinding answer.
    lookup: async () => [{ address: "127.0.0.1", family: 4 }],
  });
  try {
    await proxy.listen();
    await assert.rejects(egressOpen(proxy.ctlPath, "rebind.example", l.port), /loopback/);
    await assert.rejects(egressResolve(proxy.ctlPath, "rebind.example"), /loopback/);
    // A malformed request or policy is answered, never crashes the proxy.
    await assert.rejects(egressOpen(proxy.ctlPath, "x", 80, { default: "maybe" } as never), /malformed/);
    assert.equal(l.hits.length, 0);
  } finally {
    proxy.close();
    l.server.close();
    cleanup(dir);
  }
});
