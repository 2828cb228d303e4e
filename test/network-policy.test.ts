/**
 * A function's own network policy (`config.network`) narrows the server's (here the operator
 * granted 127.0.0.1/32): allowPrivate reaches the grant, a deny policy refuses it.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningServer, startServer } from "../src/server.ts";
import { cleanup, deployIsolateSource } from "./helpers.ts";

const FETCHER = `
export default {
  async fetch(request: Request) {
    const target = new URL(request.url).searchParams.get("url")!;
    try {
      const res = await fetch(target);
      return new Response("reached: " + (await res.text()));
    } catch (err) {
      return new Response("refused: " + String(err), { status: 502 });
    }
  },
};
`;

describe("per-function network policy", () => {
  let s: RunningServer;
  let upstream: Server;
  let target = "";
  const dir = mkdtempSync(join(tmpdir(), "nimbus-net-"));

  const deploy = (name: string, config: Record<string, unknown>) =>
    deployIsolateSource(s, dir, name, FETCHER, config);

  before(async () => {
    upstream = createServer((_req, res) => res.end("upstream"));
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    target = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
    // The operator grants the loopback address the upstream listens on.
    s = await startServer({
      port: 0,
      dataDir: join(dir, "data"),
      prewarm: 1,
      log: () => {},
      egressAllow: ["127.0.0.1/32"],
    });
  });
  after(async () => {
    await s.close();
    upstream.close();
    cleanup(dir);
  });

  it("allowPrivate lets a function reach a private address; a deny policy refuses it", async () => {
    const open = await deploy("open", {
      executor: "isolate",
      network: { default: "allow", allowPrivate: true },
    });
    assert.equal(open.status, 200, JSON.stringify(open.body));
    const closed = await deploy("closed", { executor: "isolate", network: { default: "deny" } });
    assert.equal(closed.status, 200, JSON.stringify(closed.body));
    const q = `?url=${encodeURIComponent(target)}`;
    const a = await fetch(`${s.url}/fn/open${q}`);
    assert.equal(await a.text(), "reached: upstream");
    const b = await fetch(`${s.url}/fn/closed${q}`);
    assert.equal(b.status, 502);
    assert.match(await b.text(), /^refused: /);
  });

  it("an invalid policy fails the deploy naming the field; the process executor takes one too", async () => {
    const bad = await deploy("bad", { executor: "isolate", network: { default: "maybe" } });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /config\.network\.default/);
    const proc = await deploy("proc", { executor: "process", network: { default: "deny" } });
    assert.equal(proc.status, 200, JSON.stringify(proc.body));
  });
});
