import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import { installLazyRequestSupport, lazyRequest } from "./lazy-request.ts";

const HEADERS: [string, string][] = [
  ["content-type", "text/plain"],
  ["x-a", "1"],
  ["x-a", "2"],
];

describe("lazy Request (the runtime shim's fetch-handler request)", () => {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => res.end(`${req.method} ${req.url} ${req.headers["x-a"]} ${body}`));
  });
  let port = 0;
  before(async () => {
    installLazyRequestSupport();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  it("is a Request with the frame's method and URL, and no own properties", () => {
    const r = lazyRequest("http://127.0.0.1:7070/a/b?x=1", "GET", HEADERS, undefined);
    assert.ok(r instanceof Request);
    assert.equal(r.method, "GET");
    assert.equal(r.url, "http://127.0.0.1:7070/a/b?x=1");
    assert.equal(Object.prototype.toString.call(r), "[object Request]");
    assert.equal(JSON.stringify(r), JSON.stringify(new Request("http://a/")));
    assert.deepEqual(Object.keys(r), []);
    assert.deepEqual(Reflect.ownKeys(r), []);
    assert.match(inspect(r), /^Request \{/);
  });

  it("answers everything else as undici's Request does", async () => {
    const r = lazyRequest("http://h:8080/p", "POST", HEADERS, Buffer.from("hello"));
    assert.equal(r.headers.get("x-a"), "1, 2");
    assert.equal(r.headers.get("content-type"), "text/plain");
    assert.ok(r.signal instanceof AbortSignal);
    assert.equal(r.redirect, "follow");
    const copy = r.clone();
    assert.equal(await r.text(), "hello");
    assert.equal(r.bodyUsed, true);
    assert.equal(await copy.text(), "hello");
    await assert.rejects(r.text(), TypeError);
    const j = lazyRequest("http://h/j", "PUT", [], Buffer.from('{"a":1}'));
    assert.deepEqual(await j.json(), { a: 1 });
  });

  it("goes where a Request goes: new Request(request, init), subclasses, fetch(request)", async () => {
    const r = lazyRequest(`http://127.0.0.1:${port}/echo?q=1`, "POST", HEADERS, Buffer.from("body"));
    const n = new Request(r, { headers: { "x-a": "3" } });
    assert.equal(n.method, "POST");
    assert.equal(n.url, `http://127.0.0.1:${port}/echo?q=1`);
    assert.equal(n.headers.get("x-a"), "3");
    assert.equal(await n.text(), "body");
    class Sub extends Request {}
    assert.ok(new Sub("http://a/") instanceof Sub);
    const res = await fetch(lazyRequest(`http://127.0.0.1:${port}/f`, "POST", HEADERS, Buffer.from("sent")));
    assert.equal(await res.text(), "POST /f 1, 2 sent");
  });

  it("gives the URL undici would, whatever the Host header and path (made at once when unsure)", () => {
    for (const url of [
      "http://127.0.0.1:7070/a/b?x=1",
      "http://localhost/",
      "http://Host/a",
      "http://h:80/a",
      "http://h:0080/",
      "http://h/a b",
      "http://h/a/../b",
      "http://h/%2e/x",
      "http://h/x?a='1'",
      'http://h/%7e?q=a"b',
      "http://[::1]:7070/",
      "http://127.1/",
      "http://2130706433/",
      "http://h/a?x=%ZZ&y=é",
      "http://a.b-c.d:65535/x?y=1&z=%20",
    ]) {
      assert.equal(lazyRequest(url, "GET", [], undefined).url, new Request(url).url, url);
    }
  });

  it("refuses what undici refuses, when it is made (as before: the invocation fails)", () => {
    assert.throws(() => lazyRequest("http://h:65536/", "GET", [], undefined), TypeError);
    assert.throws(() => lazyRequest("http://h/", "TRACE", [], undefined), TypeError);
  });
});
