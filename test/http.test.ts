import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { cleanup, startTestServer, type TestServer } from "./helpers.ts";

describe("function shapes over HTTP", () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
    for (const [name, file, config] of [
      ["echo", "echo.ts", { env: { GREETING: "hi" } }],
      ["lam", "lambda-echo.ts", {}],
      ["fnd", "fn-default.ts", {}],
    ] as const) {
      const r = await s.deploy(name, file, config);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  });
  after(async () => {
    await s.stop();
    cleanup(s.dataDir);
  });

  it("fetch handler: path, query, method, headers and a binary body reach it unchanged, and come back unchanged", async () => {
    const body = randomBytes(256 * 1024);
    const res = await fetch(`${s.url}/fn/echo/any/sub/path?x=1&y=two`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "x-custom": "yes" },
      body,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-echo-method"), "PUT");
    assert.equal(res.headers.get("x-echo-path"), "/any/sub/path");
    assert.equal(res.headers.get("x-echo-query"), "?x=1&y=two");
    assert.equal(res.headers.get("x-echo-custom"), "yes");
    assert.equal(res.headers.get("x-echo-env"), "hi");
    assert.deepEqual(res.headers.getSetCookie(), ["a=1", "b=2"]);
    assert.match(res.headers.get("x-nimbus-invocation-id") ?? "", /^[0-9a-f-]{36}$/);
    assert.match(res.headers.get("x-nimbus-cold-start") ?? "", /^[01]$/);
    const back = Buffer.from(await res.arrayBuffer());
    assert.ok(back.equals(body), "binary body must round-trip byte for byte");
  });

  it("fetch handler: the function's status is passed through; HEAD has no body", async () => {
    const res = await fetch(`${s.url}/fn/echo/x?status=418`);
    assert.equal(res.status, 418);
    await res.arrayBuffer();
    const head = await fetch(`${s.url}/fn/echo/x`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  it("default-exported function shape", async () => {
    const res = await fetch(`${s.url}/fn/fnd`, { method: "POST" });
    assert.deepEqual(await res.json(), { shape: "function", method: "POST" });
  });

  it("lambda handler receives an HTTP API v2.0 event and a Lambda context", async () => {
    const res = await fetch(`${s.url}/fn/lam/items/42?a=1&a=2&b=x`, {
      method: "POST",
      headers: { "content-type": "application/json", cookie: "k=v; z=w", "user-agent": "test-agent" },
      body: JSON.stringify({ hello: "world" }),
    });
    assert.equal(res.status, 200);
    const r = (await res.json()) as any;
    assert.equal(r.event.version, "2.0");
    assert.equal(r.event.rawPath, "/items/42");
    assert.equal(r.event.rawQueryString, "a=1&a=2&b=x");
    assert.deepEqual(r.event.queryStringParameters, { a: "1,2", b: "x" });
    assert.deepEqual(r.event.cookies, ["k=v", "z=w"]);
    assert.equal(r.event.headers["content-type"], "application/json");
    assert.equal(r.event.requestContext.http.method, "POST");
    assert.equal(r.event.requestContext.http.path, "/items/42");
    assert.equal(r.event.requestContext.http.userAgent, "test-agent");
    assert.equal(r.isBase64Encoded, false);
    assert.equal(r.bodyLength, JSON.stringify({ hello: "world" }).length);
    assert.equal(r.context.functionName, "lam");
    assert.equal(r.context.functionVersion, "1");
    assert.equal(r.context.memoryLimitInMB, "128");
    assert.equal(r.context.awsRequestId, res.headers.get("x-nimbus-invocation-id"));
    assert.ok(r.context.remaining > 25_000 && r.context.remaining <= 30_000);
  });

  it("lambda handler: binary bodies travel base64 in the event and come back decoded", async () => {
    const body = randomBytes(100_000);
    const res = await fetch(`${s.url}/fn/lam/binary`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body,
    });
    assert.equal(res.status, 200);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(body));
  });

  it("lambda handler: a plain return value is JSON-encoded; cookies become set-cookie", async () => {
    const plain = await fetch(`${s.url}/fn/lam/plain`);
    assert.equal(plain.headers.get("content-type"), "application/json");
    assert.deepEqual(await plain.json(), { plain: true, n: 1 });
    const c = await fetch(`${s.url}/fn/lam/cookies`);
    assert.equal(c.status, 201);
    assert.deepEqual(c.headers.getSetCookie(), ["c=3", "d=4"]);
    assert.equal(await c.text(), "cookies");
  });

  it("unknown function is 404, bad name 400, bad version selector 400, unknown version 404", async () => {
    const cases: [string, number, string][] = [
      ["/fn/nope", 404, "NIMBUS_FN_NOT_FOUND"],
      ["/fn/Bad_Name", 400, "NIMBUS_BAD_FUNCTION_NAME"],
      ["/fn/echo@abc", 400, "NIMBUS_BAD_REQUEST"],
      ["/fn/echo@99", 404, "NIMBUS_VERSION_NOT_FOUND"],
    ];
    for (const [path, status, code] of cases) {
      const res = await fetch(`${s.url}${path}`);
      assert.equal(res.status, status, path);
      const body = (await res.json()) as any;
      assert.equal(body.error.code, code, path);
      assert.ok(body.error.message.length > 10);
    }
  });

  it("a body over 6 MB is refused with 413 before it is buffered", async () => {
    const big = Buffer.alloc(6 * 1024 * 1024 + 1, 1);
    const res = await fetch(`${s.url}/fn/echo`, { method: "POST", body: big });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as any).error.code, "NIMBUS_PAYLOAD_TOO_LARGE");
    // Exactly 6 MB is accepted.
    const ok = await fetch(`${s.url}/fn/echo`, { method: "POST", body: Buffer.alloc(6 * 1024 * 1024, 2) });
    assert.equal(ok.status, 200);
    assert.equal((await ok.arrayBuffer()).byteLength, 6 * 1024 * 1024);
  });

  it("a chunked body over 6 MB (no content-length) is cut off with 413", async () => {
    const chunk = Buffer.alloc(1024 * 1024, 3);
    let sent = 0;
    const stream = new ReadableStream({
      pull(c) {
        if (sent >= 8) return c.close();
        sent++;
        c.enqueue(chunk);
      },
    });
    const res = await fetch(`${s.url}/fn/echo`, {
      method: "POST",
      body: stream,
      duplex: "half",
    } as RequestInit);
    assert.equal(res.status, 413);
  });

  it("the OpenAPI document is served and lists the routes the CLI uses", async () => {
    const res = await fetch(`${s.url}/api/v1/openapi.json`);
    const doc = (await res.json()) as any;
    assert.equal(doc.openapi, "3.1.0");
    for (const p of [
      "/api/v1/functions",
      "/api/v1/functions/{name}",
      "/api/v1/functions/{name}/versions",
      "/api/v1/functions/{name}/rollback",
      "/api/v1/functions/{name}/invoke",
      "/api/v1/functions/{name}/logs",
      "/api/v1/usage",
    ]) {
      assert.ok(doc.paths[p], `missing ${p}`);
    }
  });

  it("the control API requires a key", async () => {
    const res = await fetch(`${s.url}/api/v1/functions`);
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as any).error.code, "NIMBUS_UNAUTHORIZED");
    const bad = await fetch(`${s.url}/api/v1/functions`, { headers: { authorization: "Bearer nope" } });
    assert.equal(bad.status, 401);
  });
});
