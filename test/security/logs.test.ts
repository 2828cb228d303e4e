/**
 * Abuse of the live log stream: a client that never reads while a function logs megabytes
 * is cut off at the stream's buffer bound (the server never buffers for it without bound),
 * and the server keeps serving everyone else; no key, no stream.
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { cleanup, sleep, startTestServer, type TestServer } from "../helpers.ts";

describe("live log stream abuse", () => {
  let s: TestServer;
  before(async () => {
    // A small bound (64 KB) so that the test needs only a few MB of logs to cross it.
    s = await startTestServer({ args: ["--log-stream-buffer", "64"] });
    const d = await s.deploy("logger", "logger.ts");
    assert.equal(d.status, 200, JSON.stringify(d.body));
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("attack: a follower that never reads while the function logs MBs → cut off at the bound, server unharmed", async () => {
    const u = new URL(s.url);
    const sock = connect({ host: u.hostname, port: Number(u.port) });
    // A tiny receive buffer and no reading: everything the server sends piles up on its side.
    sock.setNoDelay(true);
    await new Promise<void>((r) => sock.once("connect", () => r()));
    sock.pause();
    sock.write(
      `GET /api/v1/functions/logger/logs?follow=1&limit=1 HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${s.adminKey}\r\n\r\n`,
    );
    let closed = false;
    sock.once("close", () => {
      closed = true;
    });
    sock.on("error", () => {});
    await sleep(1000);
    // ~24 MB of log lines: far beyond the socket buffers and the 64 KB bound.
    let written = 0;
    for (let i = 0; i < 12 && !closed; i++) {
      const r = await fetch(`${s.url}/fn/logger/?n=100&size=20000&text=flood${i}`);
      assert.equal(r.status, 200, await r.clone().text());
      await r.text();
      written += 100 * 20_000;
    }
    // Now read what the server had sent: the stream must end (cut off), not go on.
    let received = 0;
    sock.on("data", (d: Buffer) => {
      received += d.length;
    });
    sock.resume();
    for (let i = 0; i < 200 && !closed; i++) await sleep(100);
    assert.ok(closed, "the server closed the slow follower's stream");
    assert.ok(received < written, `received ${received} of ${written} bytes: the follower was cut off`);
    // The platform log says so (its line may reach the test's pipe a moment later).
    for (let i = 0; i < 50 && !/log stream cut off/.test(s.stdout()); i++) await sleep(100);
    assert.match(s.stdout(), /log stream cut off: its client reads too slowly/);
    // Everyone else is still served.
    const h = await fetch(`${s.url}/api/v1/health`);
    assert.equal(h.status, 200);
    const r = await fetch(`${s.url}/fn/logger/?n=1&text=after`);
    assert.equal(await r.text(), "logged 1");
  });

  it("attack: a log stream without a key → 401, nothing streamed", async () => {
    const r = await fetch(`${s.url}/api/v1/functions/logger/logs?follow=1`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.code, "NIMBUS_UNAUTHORIZED");
  });

  it("attack: a forged Last-Event-ID (not a number) → ignored, the stream starts from the backlog", async () => {
    await (await fetch(`${s.url}/fn/logger/?n=1&text=forged-check`)).text();
    const ac = new AbortController();
    const stop = setTimeout(() => ac.abort(), 20_000);
    const r = await fetch(`${s.url}/api/v1/functions/logger/logs?follow=1&limit=1`, {
      headers: { authorization: `Bearer ${s.adminKey}`, "last-event-id": "1 OR 1=1; DROP TABLE logs" },
      signal: ac.signal,
    });
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    let text = "";
    while (!text.includes("event: log")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    clearTimeout(stop);
    ac.abort();
    assert.match(text, /event: log\ndata: .*forged-check 0/);
    const logs = await s.api("GET", "/api/v1/functions/logger/logs?limit=1");
    assert.equal(logs.status, 200);
    assert.equal(logs.body.lines.length, 1);
  });
});
