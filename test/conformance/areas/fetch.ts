/** Headers, Request, Response, Blob/File and FormData, from the Fetch, File API and XHR Standards. */
import { arrayEq, eq, ok, readAllChunks, rejects, type Suite, throws } from "../harness.ts";

const enc = new TextEncoder();

/** Registers the Headers subtests. */
export function headersTests(t: Suite): void {
  t.area = "Headers";
  t.test("Create headers from no parameter", () => eq([...new Headers()].length, 0));
  t.test("Create headers from undefined parameter", () => eq([...new Headers(undefined)].length, 0));
  t.test("Create headers with null should throw", () =>
    throws("TypeError", () => new Headers(null as never)),
  );
  t.test("Create headers with 1 should throw", () => throws("TypeError", () => new Headers(1 as never)));
  t.test("Create headers with a string should throw", () =>
    throws("TypeError", () => new Headers("x" as never)),
  );
  t.test("Create headers with a sequence", () => {
    const h = new Headers([
      ["a", "1"],
      ["B", "2"],
    ]);
    arrayEq(
      [...h],
      [
        ["a", "1"],
        ["b", "2"],
      ],
    );
  });
  t.test("Create headers with a sequence of wrong length throws", () => {
    throws("TypeError", () => new Headers([["a"]] as never));
    throws("TypeError", () => new Headers([["a", "b", "c"]] as never));
  });
  t.test("Create headers with a record, order kept for getting, sorted for iteration", () => {
    const h = new Headers({ b: "1", a: "2" });
    arrayEq(
      [...h],
      [
        ["a", "2"],
        ["b", "1"],
      ],
    );
  });
  t.test("Create headers with a record that has a symbol key throws", () => {
    throws("TypeError", () => new Headers({ [Symbol("x")]: "y" } as never));
  });
  t.test("Create headers with a record skips non-enumerable keys", () => {
    const rec = Object.defineProperty({ a: "1" }, "b", { value: "2", enumerable: false });
    arrayEq([...new Headers(rec)], [["a", "1"]]);
  });
  t.test("Create headers with a proxy record: ownKeys then getOwnPropertyDescriptor then get", () => {
    const log: string[] = [];
    const p = new Proxy({ a: "1", b: "2" } as Record<string, string>, {
      ownKeys(o) {
        log.push("ownKeys");
        return Reflect.ownKeys(o);
      },
      getOwnPropertyDescriptor(o, k) {
        log.push(`gopd:${String(k)}`);
        return Reflect.getOwnPropertyDescriptor(o, k);
      },
      get(o, k) {
        log.push(`get:${String(k)}`);
        return Reflect.get(o, k);
      },
    });
    new Headers(p);
    arrayEq(log, ["ownKeys", "gopd:a", "get:a", "gopd:b", "get:b"]);
  });
  t.test("Create headers from Headers", () => {
    const a = new Headers({ x: "1" });
    const h = new Headers(a);
    a.set("x", "2");
    eq(h.get("x"), "1");
  });
  t.test("Headers values are combined with ', '", () => {
    const h = new Headers();
    h.append("a", "1");
    h.append("A", "2");
    eq(h.get("a"), "1, 2");
  });
  t.test("Headers values are normalised (leading/trailing HTTP whitespace)", () => {
    const h = new Headers({ a: " \t x \n\r" });
    eq(h.get("a"), "x");
  });
  t.test("Header values containing NUL, CR or LF throw", () => {
    throws("TypeError", () => new Headers({ a: "x\0y" }));
    throws("TypeError", () => new Headers({ a: "x\ry" }));
    throws("TypeError", () => new Headers({ a: "x\ny" }));
  });
  t.test("Header values above U+00FF throw", () => {
    throws("TypeError", () => new Headers({ a: "\u0100" }));
    throws("TypeError", () => new Headers().append("a", "\uD83D\uDE00"));
  });
  t.test("Header values of latin-1 code points are kept", () =>
    eq(new Headers({ a: "\u00e9" }).get("a"), "\u00e9"),
  );
  t.test("Invalid header names throw", () => {
    for (const n of ["", "a b", "a:", "\u00e9", "a\n", "(a)"])
      throws("TypeError", () => new Headers().append(n, "x"), n);
  });
  t.test("Headers.get of a missing name is null", () => eq(new Headers().get("x"), null));
  t.test("Headers has/delete/set", () => {
    const h = new Headers({ a: "1" });
    ok(h.has("A"));
    h.set("a", "2");
    eq(h.get("a"), "2");
    h.delete("A");
    ok(!h.has("a"));
  });
  t.test("Headers getSetCookie keeps each value", () => {
    const h = new Headers([
      ["set-cookie", "a=1"],
      ["Set-Cookie", "b=2"],
    ]);
    arrayEq(h.getSetCookie(), ["a=1", "b=2"]);
    arrayEq(
      [...h],
      [
        ["set-cookie", "a=1"],
        ["set-cookie", "b=2"],
      ],
    );
  });
  t.test("Headers iterator object is not a generator", () => {
    const it = new Headers({ a: "1" }).entries();
    eq(Object.prototype.toString.call(it), "[object Headers Iterator]");
  });
  t.test("Headers iterator prototype chain reaches %IteratorPrototype%", () => {
    const it = new Headers().keys();
    const iterProto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
    eq(Object.getPrototypeOf(Object.getPrototypeOf(it)), iterProto);
  });
  t.test("Headers iteration is live and sorted", () => {
    const h = new Headers({ b: "1", c: "2" });
    const seen: string[] = [];
    for (const [k] of h) {
      seen.push(k);
      if (k === "b") h.set("d", "3");
    }
    arrayEq(seen, ["b", "c", "d"]);
  });
  t.test("Headers forEach", () => {
    const seen: string[] = [];
    new Headers({ b: "1", a: "2" }).forEach((v, k) => {
      seen.push(`${k}=${v}`);
    });
    arrayEq(seen, ["a=2", "b=1"]);
  });
  t.test("Headers Symbol.toStringTag", () =>
    eq(Object.prototype.toString.call(new Headers()), "[object Headers]"),
  );
  t.test("Request headers with no-cors guard drop non-simple headers", () => {
    const r = new Request("http://x/", { mode: "no-cors", headers: { "x-a": "1", accept: "b" } });
    eq(r.headers.get("x-a"), null);
    eq(r.headers.get("accept"), "b");
  });
  t.test("Response.error() headers are immutable", () => {
    throws("TypeError", () => Response.error().headers.set("a", "b"));
  });
}

/** Registers the Request subtests. */
export function requestTests(t: Suite): void {
  t.area = "Request";
  t.test("Request with a relative URL throws (no base)", () => throws("TypeError", () => new Request("/x")));
  t.test("Request with credentials in the URL throws", () =>
    throws("TypeError", () => new Request("http://u:p@x/")),
  );
  t.test("Request defaults", () => {
    const r = new Request("http://x/a#frag");
    eq(r.url, "http://x/a#frag");
    eq(r.method, "GET");
    eq(r.redirect, "follow");
    eq(r.mode, "cors");
    eq(r.credentials, "same-origin");
    eq(r.cache, "default");
    eq(r.referrer, "about:client");
    eq(r.integrity, "");
    eq(r.keepalive, false);
    eq(r.body, null);
    eq(r.bodyUsed, false);
    ok(r.signal instanceof AbortSignal);
  });
  for (const m of ["delete", "get", "head", "options", "post", "put"]) {
    t.test(`Request method ${m} is normalised`, () =>
      eq(new Request("http://x/", { method: m }).method, m.toUpperCase()),
    );
  }
  t.test("Request method patch is not normalised", () =>
    eq(new Request("http://x/", { method: "patch" }).method, "patch"),
  );
  for (const m of ["CONNECT", "TRACE", "track", "a b", ""]) {
    t.test(`Request with method ${JSON.stringify(m)} throws`, () =>
      throws("TypeError", () => new Request("http://x/", { method: m })),
    );
  }
  t.test("Request with GET and a body throws", () =>
    throws("TypeError", () => new Request("http://x/", { body: "x" })),
  );
  t.test("Request with HEAD and a body throws", () =>
    throws("TypeError", () => new Request("http://x/", { method: "HEAD", body: "x" })),
  );
  t.test("Request with a string body has text/plain content type", async () => {
    const r = new Request("http://x/", { method: "POST", body: "hi" });
    eq(r.headers.get("content-type"), "text/plain;charset=UTF-8");
    eq(await r.text(), "hi");
  });
  t.test("Request with URLSearchParams body", async () => {
    const r = new Request("http://x/", { method: "POST", body: new URLSearchParams("a=b c") });
    eq(r.headers.get("content-type"), "application/x-www-form-urlencoded;charset=UTF-8");
    eq(await r.text(), "a=b+c");
  });
  t.test("Request with a Blob body takes its type", async () => {
    const r = new Request("http://x/", { method: "POST", body: new Blob(["x"], { type: "text/x" }) });
    eq(r.headers.get("content-type"), "text/x");
  });
  t.test("Request with a FormData body is multipart", async () => {
    const fd = new FormData();
    fd.append("a", "1");
    const r = new Request("http://x/", { method: "POST", body: fd });
    ok(/^multipart\/form-data; boundary=/.test(r.headers.get("content-type") ?? ""), "content-type");
    const back = await r.formData();
    eq(back.get("a"), "1");
  });
  t.test("Request.clone copies the body", async () => {
    const r = new Request("http://x/", { method: "POST", body: "abc" });
    const c = r.clone();
    eq(await r.text(), "abc");
    eq(await c.text(), "abc");
  });
  t.test("Request body can be read only once", async () => {
    const r = new Request("http://x/", { method: "POST", body: "abc" });
    await r.text();
    eq(r.bodyUsed, true);
    await rejects("TypeError", () => r.text());
  });
  t.test("Request.clone of a used body throws", async () => {
    const r = new Request("http://x/", { method: "POST", body: "abc" });
    await r.text();
    throws("TypeError", () => r.clone());
  });
  t.test("new Request(request) copies method, headers and body", async () => {
    const a = new Request("http://x/", { method: "PUT", body: "b", headers: { x: "1" } });
    const r = new Request(a);
    eq(r.method, "PUT");
    eq(r.headers.get("x"), "1");
    eq(await r.text(), "b");
  });
  t.test("new Request(request, init) overrides", () => {
    const r = new Request(new Request("http://x/", { headers: { x: "1" } }), {
      headers: { y: "2" },
      method: "POST",
    });
    eq(r.headers.get("x"), null);
    eq(r.headers.get("y"), "2");
    eq(r.method, "POST");
  });
  t.test("Request with a ReadableStream body requires duplex", () => {
    const body = new ReadableStream();
    throws("TypeError", () => new Request("http://x/", { method: "POST", body }));
    const r = new Request("http://x/", { method: "POST", body, duplex: "half" } as RequestInit);
    ok(r.body instanceof ReadableStream);
  });
  t.test("Request with an invalid mode or redirect throws", () => {
    throws("TypeError", () => new Request("http://x/", { redirect: "x" as never }));
    throws("TypeError", () => new Request("http://x/", { mode: "navigate" }));
  });
  t.test("Request signal follows init.signal", () => {
    const ac = new AbortController();
    const r = new Request("http://x/", { signal: ac.signal });
    ac.abort();
    ok(r.signal.aborted);
  });
  t.test("Request.arrayBuffer/bytes/json/blob", async () => {
    const mk = () => new Request("http://x/", { method: "POST", body: '{"a":1}' });
    eq((await mk().arrayBuffer()).byteLength, 7);
    eq((await mk().json()).a, 1);
    eq((await mk().blob()).size, 7);
    eq((await mk().bytes()).length, 7);
  });
  t.test("Request Symbol.toStringTag", () =>
    eq(Object.prototype.toString.call(new Request("http://x/")), "[object Request]"),
  );
}

/** Registers the Response subtests. */
export function responseTests(t: Suite): void {
  t.area = "Response";
  t.test("Response defaults", () => {
    const r = new Response();
    eq(r.status, 200);
    eq(r.statusText, "");
    eq(r.ok, true);
    eq(r.type, "default");
    eq(r.url, "");
    eq(r.redirected, false);
    eq(r.body, null);
  });
  for (const s of [0, 100, 199, 600, 1000]) {
    t.test(`Response with status ${s} throws RangeError`, () =>
      throws("RangeError", () => new Response("", { status: s })),
    );
  }
  for (const s of [204, 205, 304]) {
    t.test(`Response with null-body status ${s} and a body throws`, () =>
      throws("TypeError", () => new Response("x", { status: s })),
    );
  }
  t.test("Response statusText must be a reason phrase", () => {
    throws("TypeError", () => new Response("", { statusText: "a\nb" }));
    eq(new Response("", { statusText: "\u00e9" }).statusText, "\u00e9");
  });
  t.test("Response.error()", () => {
    const r = Response.error();
    eq(r.type, "error");
    eq(r.status, 0);
    eq(r.ok, false);
  });
  t.test("Response.redirect", () => {
    const r = Response.redirect("http://x/a", 301);
    eq(r.status, 301);
    eq(r.headers.get("location"), "http://x/a");
    throws("RangeError", () => Response.redirect("http://x/", 200));
    throws("TypeError", () => Response.redirect("/rel"));
  });
  t.test("Response.json", async () => {
    const r = Response.json({ a: 1 }, { status: 201 });
    eq(r.status, 201);
    eq(r.headers.get("content-type"), "application/json");
    eq(await r.text(), '{"a":1}');
    throws("TypeError", () => Response.json(Symbol("x")));
    throws("TypeError", () => Response.json(1, { status: 204 }));
  });
  t.test("Response from a ReadableStream of Uint8Array", async () => {
    const body = new ReadableStream({
      start(c) {
        c.enqueue(enc.encode("ab"));
        c.enqueue(enc.encode("c"));
        c.close();
      },
    });
    eq(await new Response(body).text(), "abc");
  });
  t.test("Response from a locked stream throws", () => {
    const s = new ReadableStream();
    s.getReader();
    throws("TypeError", () => new Response(s));
  });
  t.test("Response from a disturbed stream throws", async () => {
    const s = new ReadableStream({ start: (c) => c.close() });
    await s.getReader().read();
    throws("TypeError", () => new Response(s));
  });
  for (const [label, chunk] of [
    ["a string", "x"],
    ["a number", 1],
    ["null", null],
    ["an ArrayBuffer", new ArrayBuffer(1)],
    ["an object", {}],
  ] as [string, unknown][]) {
    t.test(`Reading a Response stream with ${label} chunk rejects with TypeError`, async () => {
      const r = new Response(new ReadableStream({ start: (c) => c.enqueue(chunk) }));
      await rejects("TypeError", () => r.text());
    });
  }
  t.test("Response from a stream: reading locks the stream", async () => {
    const r = new Response("abc");
    const reader = r.body!.getReader();
    await rejects("TypeError", () => r.text());
    reader.releaseLock();
  });
  t.test("Response body bytes from a typed array view", async () => {
    const u = new Uint8Array([1, 2, 3, 4]).subarray(1, 3);
    arrayEq(new Uint8Array(await new Response(u).arrayBuffer()), [2, 3]);
    arrayEq(new Uint8Array(await new Response(new DataView(u.buffer, 1, 2)).arrayBuffer()), [2, 3]);
  });
  t.test("Response.clone tees the body", async () => {
    const r = new Response("abc");
    const c = r.clone();
    eq(await c.text(), "abc");
    eq(await r.text(), "abc");
  });
  t.test("Response.clone of a used body throws", async () => {
    const r = new Response("abc");
    await r.text();
    throws("TypeError", () => r.clone());
  });
  t.test("Response bodyUsed after reading the body stream", async () => {
    const r = new Response("abc");
    await readAllChunks(r.body!);
    eq(r.bodyUsed, true);
  });
  t.test("Response.formData of urlencoded", async () => {
    const r = new Response("a=1&b=2", { headers: { "content-type": "application/x-www-form-urlencoded" } });
    const fd = await r.formData();
    eq(fd.get("b"), "2");
  });
  t.test("Response.formData with a wrong type rejects", async () => {
    await rejects("TypeError", () =>
      new Response("a=1", { headers: { "content-type": "text/plain" } }).formData(),
    );
  });
  t.test("Response.formData of multipart with a file", async () => {
    const body =
      '--B\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B\r\nContent-Disposition: form-data; name="t"\r\n\r\nv\r\n--B--\r\n';
    const fd = await new Response(body, {
      headers: { "content-type": "multipart/form-data; boundary=B" },
    }).formData();
    const f = fd.get("f") as File;
    ok(f instanceof File, "is a File");
    eq(f.name, "a.txt");
    eq(f.type, "text/plain");
    eq(await f.text(), "hello");
    eq(fd.get("t"), "v");
  });
  t.test("Response.formData of malformed multipart rejects", async () => {
    await rejects("TypeError", () =>
      new Response("garbage", { headers: { "content-type": "multipart/form-data; boundary=B" } }).formData(),
    );
  });
  t.test("Response with a Blob body takes its type", () => {
    eq(new Response(new Blob([], { type: "a/b" })).headers.get("content-type"), "a/b");
  });
  t.test("Response with a URLSearchParams body", async () => {
    const r = new Response(new URLSearchParams("a=1"));
    eq(r.headers.get("content-type"), "application/x-www-form-urlencoded;charset=UTF-8");
  });
  t.test("Response headers guard: set-cookie readable, headers mutable", () => {
    const r = new Response("", { headers: { a: "1" } });
    r.headers.set("b", "2");
    eq(r.headers.get("b"), "2");
  });
  t.test("Response Symbol.toStringTag", () =>
    eq(Object.prototype.toString.call(new Response()), "[object Response]"),
  );
}

/** Registers the Blob/File and FormData subtests. */
export function blobFormTests(t: Suite): void {
  t.area = "Blob/File";
  t.test("Blob from mixed parts", async () => {
    const b = new Blob(["ab", new Uint8Array([0x63]), new Blob(["d"]), new ArrayBuffer(1)]);
    eq(b.size, 5);
    eq(await b.text(), "abcd\0");
  });
  t.test("Blob type is lower-cased, invalid type is empty", () => {
    eq(new Blob([], { type: "A/B" }).type, "a/b");
    eq(new Blob([], { type: "a/\u00e9" }).type, "");
  });
  t.test("Blob endings native/transparent", async () => {
    eq(await new Blob(["a\r\nb"], { endings: "transparent" }).text(), "a\r\nb");
    throws("TypeError", () => new Blob([], { endings: "x" as never }));
  });
  t.test("Blob from a non-sequence throws", () => throws("TypeError", () => new Blob("abc" as never)));
  t.test("Blob slice with negative indices and type", async () => {
    const b = new Blob(["abcdef"]);
    eq(await b.slice(-3, -1).text(), "de");
    eq(b.slice(1, 2, "x/y").type, "x/y");
    eq(b.slice(4, 2).size, 0);
  });
  t.test("Blob.arrayBuffer, bytes and stream", async () => {
    const b = new Blob(["abc"]);
    eq((await b.arrayBuffer()).byteLength, 3);
    eq((await b.bytes()).length, 3);
    const chunks = await readAllChunks(b.stream());
    eq(
      chunks.reduce((n, c) => n + c.length, 0),
      3,
    );
  });
  t.test("Blob text decodes UTF-8 with replacement", async () => {
    eq(await new Blob([new Uint8Array([0xff, 0x61])]).text(), "\uFFFDa");
  });
  t.test("File name, lastModified and type", () => {
    const f = new File(["x"], "a/b.txt", { type: "text/plain", lastModified: 42 });
    eq(f.name, "a/b.txt");
    eq(f.lastModified, 42);
    eq(f.type, "text/plain");
    ok(f instanceof Blob);
    ok(typeof new File([], "x").lastModified === "number");
  });
  t.test("File requires two arguments", () =>
    throws("TypeError", () => new (File as unknown as new (a: unknown) => File)([])),
  );
  t.test("Blob and File Symbol.toStringTag", () => {
    eq(Object.prototype.toString.call(new Blob()), "[object Blob]");
    eq(Object.prototype.toString.call(new File([], "x")), "[object File]");
  });

  t.area = "FormData";
  t.test("FormData append/get/getAll/has/delete/set", () => {
    const fd = new FormData();
    fd.append("a", "1");
    fd.append("a", "2");
    fd.append("b", "3");
    eq(fd.get("a"), "1");
    arrayEq(fd.getAll("a"), ["1", "2"]);
    ok(fd.has("b"));
    fd.set("a", "4");
    arrayEq(
      [...fd],
      [
        ["a", "4"],
        ["b", "3"],
      ],
    );
    fd.delete("a");
    ok(!fd.has("a"));
    eq(fd.get("z"), null);
  });
  t.test("FormData converts values and names to USVString", () => {
    const fd = new FormData();
    fd.append("a\uD800", 1 as unknown as string);
    arrayEq([...fd], [["a\uFFFD", "1"]]);
  });
  t.test("FormData append of a Blob makes a File named blob", () => {
    const fd = new FormData();
    fd.append("f", new Blob(["x"]));
    const f = fd.get("f") as File;
    ok(f instanceof File);
    eq(f.name, "blob");
  });
  t.test("FormData append of a Blob with a filename", () => {
    const fd = new FormData();
    fd.append("f", new Blob(["x"]), "n.txt");
    eq((fd.get("f") as File).name, "n.txt");
  });
  t.test("FormData append of a File with a filename renames a copy", () => {
    const fd = new FormData();
    const f = new File(["x"], "a.txt");
    fd.append("f", f, "b.txt");
    eq((fd.get("f") as File).name, "b.txt");
    eq(f.name, "a.txt");
  });
  t.test("FormData with two arguments and a filename for a string throws", () => {
    throws("TypeError", () =>
      (new FormData() as unknown as { append: (...a: unknown[]) => void }).append("a", "b", "c"),
    );
  });
  t.test("FormData iteration is live", () => {
    const fd = new FormData();
    fd.append("a", "1");
    fd.append("b", "2");
    const seen: string[] = [];
    for (const [k] of fd) {
      seen.push(k);
      if (k === "a") fd.append("c", "3");
    }
    arrayEq(seen, ["a", "b", "c"]);
  });
  t.test("FormData iterator toStringTag", () =>
    eq(Object.prototype.toString.call(new FormData().entries()), "[object FormData Iterator]"),
  );
  t.test("FormData round trip through multipart", async () => {
    const fd = new FormData();
    fd.append("a", "x\r\ny");
    fd.append("f", new File(["\u00e9"], "q.txt", { type: "text/x" }));
    const back = await new Response(fd).formData();
    eq(back.get("a"), "x\r\ny");
    const f = back.get("f") as File;
    eq(f.name, "q.txt");
    eq(f.type, "text/x");
    eq(await f.text(), "\u00e9");
  });
  t.test("FormData multipart escapes quotes and newlines in names", async () => {
    const fd = new FormData();
    fd.append('a"b\nc', "v\nw");
    fd.append("f", new File(["x"], 'q"\r.txt'));
    const text = await new Response(fd).text();
    ok(text.includes('name="a%22b%0D%0Ac"'), "name escaped");
    ok(text.includes("\r\n\r\nv\r\nw\r\n"), "value line endings normalised");
    ok(text.includes('filename="q%22%0D.txt"'), "filename escaped");
  });

  t.test("request.formData() for multipart with a preamble and CRLFs in values", async () => {
    const body =
      'preamble\r\n--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nline1\r\nline2\r\n--xyz--';
    const fd = await new Request("http://x/", {
      method: "POST",
      body,
      headers: { "content-type": 'multipart/form-data; boundary="xyz"' },
    }).formData();
    eq(fd.get("a"), "line1\r\nline2");
  });
  t.test("FormData Symbol.toStringTag", () =>
    eq(Object.prototype.toString.call(new FormData()), "[object FormData]"),
  );
}
