/**
 * The isolate runtime's Web APIs, checked against Node's own implementations (which follow
 * the same standards): URL and URLSearchParams, TextEncoder/TextDecoder, atob/btoa,
 * util.format-compatible console formatting, structuredClone — plus the egress policy.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { format as nodeFormat } from "node:util";
import { Egress } from "../src/runtime/egress-policy.ts";
import { structuredClone as cloneImpl } from "../src/runtime/isolate/prelude/clone.ts";
import { atob, btoa, TextDecoder as TD, TextEncoder as TE } from "../src/runtime/isolate/prelude/encoding.ts";
import { format } from "../src/runtime/isolate/prelude/inspect.ts";
import { URLSearchParams as ISP, URL as IURL } from "../src/runtime/isolate/prelude/url.ts";
import { webOp } from "../src/runtime/isolate/web-host.ts";

// Wire the prelude's Web-API bridge to the host's side, as the isolate host does, counting calls.
let hostCalls = 0;
(globalThis as unknown as { __nimbus_web_init: (f: typeof webOp) => void }).__nimbus_web_init(
  (op, a, b, c) => {
    hostCalls++;
    return webOp(op, a, b, c);
  },
);

const URLS: [string, string?][] = [
  ["https://example.com"],
  ["HTTPS://User:Pass@EXAMPLE.com:443/a/./b/../c?x=1&y=2#frag"],
  ["http://example.com:8080/path with spaces/ü?q=a b&ü=é#h é"],
  ["http://example.com/a/b/c/../../d"],
  ["http://example.com/%2e%2E/x"],
  ["http://[::1]:3000/"],
  ["http://[2001:db8:0:0:0:0:2:1]/"],
  ["http://[::ffff:192.168.0.1]/"],
  ["http://0x7f.1/"],
  ["http://127.1/"],
  ["http://2130706433/"],
  ["http://example.com./"],
  ["http://example.com\\\\a\\\\b"],
  ["  http://example.com/trim  "],
  ["http://ex\tample.com/a\nb"],
  ["mailto:someone@example.com?subject=hi"],
  ["data:text/plain,hello world"],
  ["urn:isbn:0451450523"],
  ["file:///etc/passwd"],
  ["file://localhost/tmp/x"],
  ["ws://example.com:80/chat"],
  ["foo://host/a/../b?c#d"],
  ["http://example.com/?q='quoted'&a=\"b\""],
  ["../x?q#f", "http://h/a/b/c"],
  ["/abs", "http://h/a/b?q#f"],
  ["?only=query", "http://h/a/b?q#f"],
  ["#frag", "http://h/a/b?q"],
  ["", "http://h/a/b?q#f"],
  ["//other.host/p", "https://h/a"],
  ["http:rel", "http://h/a/b"],
  ["./x/./y/../z", "http://h/dir/file"],
  ["..", "http://h/a/b/"],
];

describe("isolate runtime: URL", () => {
  it("parses plain http(s) URLs without a host call, exactly as Node's parser does", () => {
    const hosts = [
      "a",
      "example.com",
      "x.y-z.io",
      "0x7f",
      "a.0x7f",
      "xn--abc",
      "a.xn--zca",
      "1a.b",
      "localhost",
      "example.com.",
      "a..b",
    ];
    const paths = [
      "",
      "/",
      "/a/b",
      "/./a",
      "/a/..",
      "/a/.",
      "/%2e/",
      "/a%20b",
      "/.a",
      "/..a/",
      "/a:b@c",
      "//",
      "/'x'",
    ];
    const tails = ["", "?", "?a=1&b=2", "?%zz", "?'", "??", "#", "#x", "#'a'", "?q#f"];
    const keys = [
      "href",
      "protocol",
      "username",
      "password",
      "host",
      "hostname",
      "port",
      "pathname",
      "search",
      "hash",
      "origin",
    ] as const;
    let fast = 0;
    for (const scheme of ["http", "https", "HTTP"])
      for (const h of hosts)
        for (const port of ["", ":80", ":443", ":8080", ":065", ":65536"])
          for (const p of paths)
            for (const t of tails) {
              const input = `${scheme}://${h}${port}${p}${t}`;
              // Every third URL against a plain base, every third against an invalid one.
              const n = Number(hosts.indexOf(h)) + p.length + t.length;
              const base = n % 3 === 0 ? "https://base.example/d/" : n % 3 === 1 ? "not a base" : undefined;
              const before = hostCalls;
              const node = URL.parse(input, base);
              let mine: IURL | null = null;
              try {
                mine = new IURL(input, base);
              } catch {}
              if (hostCalls === before) fast++;
              assert.equal(mine === null, node === null, `${input} against ${base}`);
              if (mine && node) for (const k of keys) assert.equal(mine[k], node[k], `${input} ${k}`);
            }
    assert.ok(fast > 500, `${fast} URLs took the fast path`);
  });

  for (const [input, base] of URLS) {
    it(`parses ${JSON.stringify(input)}${base ? ` against ${base}` : ""} as Node does`, () => {
      const n = new URL(input, base);
      const i = new IURL(input, base);
      for (const k of [
        "href",
        "origin",
        "protocol",
        "username",
        "password",
        "host",
        "hostname",
        "port",
        "pathname",
        "search",
        "hash",
      ] as const) {
        assert.equal(i[k], n[k], `${k} of ${input}`);
      }
      assert.deepEqual([...i.searchParams], [...n.searchParams]);
    });
  }

  for (const bad of [
    "not a url",
    "http://",
    "http://exa mple.com/",
    "http://[::1/",
    "http://example.com:99999/",
    "http://1.2.3.4.5/",
  ]) {
    it(`rejects ${JSON.stringify(bad)} as Node does`, () => {
      assert.throws(() => new URL(bad));
      assert.throws(() => new IURL(bad), TypeError);
    });
  }

  it("setters and searchParams write back like Node's", () => {
    const n = new URL("http://h/a?x=1");
    const i = new IURL("http://h/a?x=1");
    for (const u of [n, i]) {
      u.searchParams.append("y", "two words");
      u.searchParams.set("x", "é");
      u.pathname = "/b/c";
      u.hash = "top";
      u.port = "8080";
      u.hostname = "Other.Example";
    }
    assert.equal(i.href, n.href);
    assert.equal(
      new ISP({ a: "1 2", b: "é&=" }).toString(),
      new URLSearchParams({ a: "1 2", b: "é&=" }).toString(),
    );
    assert.deepEqual([...new ISP("a=1&b=%20x+y&a=3&c")], [...new URLSearchParams("a=1&b=%20x+y&a=3&c")]);
    const sp = new ISP("b=2&a=1&c=3");
    sp.sort();
    assert.equal(sp.toString(), "a=1&b=2&c=3");
  });
});

describe("isolate runtime: encoding", () => {
  const texts = [
    "",
    "ascii",
    "héllo wörld",
    "€ 😀 𝄞",
    "\u0000\u007f\u0080\u07ff\u0800\uffff",
    "lone \ud800 surrogate",
  ];
  it("TextEncoder matches Node byte for byte", () => {
    for (const t of texts) assert.deepEqual(new TE().encode(t), new TextEncoder().encode(t));
  });
  it("TextDecoder matches Node, including invalid input and streaming across a split character", () => {
    const bad = new Uint8Array([0x61, 0xff, 0xc3, 0x28, 0xe2, 0x82, 0x61, 0xf0, 0x9f, 0x98]);
    assert.equal(new TD().decode(bad), new TextDecoder().decode(bad));
    assert.throws(() => new TD("utf-8", { fatal: true }).decode(bad), TypeError);
    const bytes = new TextEncoder().encode("a😀b€");
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new TD();
      const s = d.decode(bytes.subarray(0, cut), { stream: true }) + d.decode(bytes.subarray(cut));
      assert.equal(s, "a😀b€", `cut at ${cut}`);
    }
    assert.equal(new TD().decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])), "A", "BOM dropped");
  });
  it("atob/btoa match Node", () => {
    for (const s of ["", "a", "ab", "abc", "hello world", "\u00ff\u0000\u0080"]) {
      assert.equal(btoa(s), globalThis.btoa(s));
      assert.equal(atob(globalThis.btoa(s)), s);
    }
    assert.equal(atob(" aGVs bG8= "), "hello");
    assert.throws(() => btoa("€"));
    assert.throws(() => atob("a"));
  });
});

describe("isolate runtime: console formatting", () => {
  const cases: unknown[][] = [
    ["plain"],
    ["hello", 42, { a: 1, b: "x" }, [1, 2]],
    ["%s is %d years and %i, %f", "Bob", 42.5, 42.9, "1.5"],
    ["%j %%", { a: [1] }],
    ["%o", "str"],
    [{ nested: { deep: { deeper: { deepest: 1 } } } }],
    [[]],
    [{}],
    [null, undefined, true, 1n, Symbol("s")],
    [new Map([["k", 1]]), new Set([1, "a"])],
    [new Uint8Array([1, 2, 3])],
    [function named() {}, () => {}],
    ["a", "b", "%s"],
    [{ "needs-quote": 1, ok: "it's" }],
    [new Date(0)],
    [/re/g],
  ];
  for (const args of cases) {
    it(`format(${args.map((a) => typeof a).join(", ")}) equals util.format`, () => {
      assert.equal(format(...args), nodeFormat(...args));
    });
  }
});

describe("isolate runtime: structuredClone", () => {
  it("clones like the platform's, cycles and shared references included", () => {
    const shared = { s: 1 };
    const v: Record<string, unknown> = {
      n: 1,
      s: "x",
      d: new Date(5),
      r: /x/gi,
      m: new Map<unknown, unknown>([[1, shared]]),
      set: new Set([shared]),
      a: [1, shared, [2]],
      u8: new Uint8Array([1, 2, 3]),
      e: new RangeError("bad"),
    };
    v.self = v;
    const c = cloneImpl(v) as typeof v;
    const n = structuredClone(v);
    assert.deepEqual(Object.keys(c), Object.keys(n));
    assert.equal(c.self, c);
    assert.notEqual(c.m, v.m);
    assert.equal(
      (c.m as Map<number, unknown>).get(1),
      (c.a as unknown[])[1],
      "shared references stay shared",
    );
    assert.ok(c.d instanceof Date && (c.d as Date).getTime() === 5);
    assert.ok(c.e instanceof RangeError && (c.e as Error).message === "bad");
    assert.deepEqual(c.u8, v.u8);
    assert.throws(() => cloneImpl({ f() {} }), /could not be cloned/);
  });
});

describe("isolate egress policy", () => {
  it("refuses non-public addresses by default and follows allow/deny rules", () => {
    const e = new Egress({ default: "allow" });
    assert.equal(e.check("example.com", "93.184.215.14"), undefined);
    for (const ip of [
      "127.0.0.1",
      "10.1.2.3",
      "172.16.0.1",
      "192.168.1.1",
      "169.254.169.254",
      "::1",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "0.0.0.0",
    ]) {
      assert.match(e.check("h", ip) ?? "", /private|loopback|link-local/, ip);
    }
    const d = new Egress({
      default: "deny",
      allow: ["api.example.com", "*.trusted.dev", "10.0.0.0/8"],
      deny: ["10.9.9.9"],
    });
    assert.equal(d.check("api.example.com", "93.184.215.14"), undefined);
    assert.equal(d.check("x.trusted.dev", "1.2.3.4"), undefined);
    assert.equal(d.check("internal", "10.1.1.1"), undefined, "an allow rule admits a private range");
    assert.match(d.check("internal", "10.9.9.9") ?? "", /allow list|denied/);
    assert.match(d.check("example.com", "93.184.215.14") ?? "", /allow list/);
    const p = new Egress({
      default: "allow",
      allowPrivate: true,
      deny: ["metadata.internal", "169.254.169.254"],
    });
    assert.equal(p.check("db", "10.0.0.5"), undefined);
    assert.match(p.check("metadata.internal", "1.1.1.1") ?? "", /denied/);
    assert.match(p.check("x", "169.254.169.254") ?? "", /denied/);
  });
});

describe("isolate runtime: the Web-API bridge bounds what an isolate can ask of the host", () => {
  it("attack: an isolate hands the bridge oversized or ill-typed arguments → null, no work on the host", async () => {
    const { MAX_WEB_STRING, MAX_WEB_BYTES, WEB_OP } = await import("../src/runtime/isolate/web-host.ts");
    const big = "a".repeat(MAX_WEB_STRING + 1);
    assert.equal(webOp(WEB_OP.URL_PARSE, `http://x/${big}`, undefined, undefined), null);
    assert.equal(webOp(WEB_OP.URL_PARSE, "/p", big, undefined), null);
    assert.equal(webOp(WEB_OP.URL_PARSE, { toString: () => "http://x/" }, undefined, undefined), null);
    assert.equal(webOp(WEB_OP.URL_SET, "http://x/", "__proto__", "y"), null);
    assert.equal(webOp(WEB_OP.URL_SET, "http://x/", "href", "http://y/"), null);
    assert.equal(webOp(WEB_OP.URL_SET, "http://x/", "pathname", big), null);
    assert.equal(webOp(WEB_OP.ENC_NAME, "a".repeat(65), undefined, undefined), null);
    assert.equal(webOp(WEB_OP.ENC_TABLE, "utf-8", undefined, undefined), null);
    assert.equal(webOp(WEB_OP.ENC_DECODE, "gbk", [0xc4, 0xe3], false), null);
    assert.equal(webOp(WEB_OP.ENC_DECODE, "gbk", new Uint8Array(MAX_WEB_BYTES + 1), false), null);
    assert.equal(webOp(WEB_OP.ENC_DECODE, "shift_jis", new Uint8Array([0x82]), true), null);
    assert.equal(webOp(99, "x", "y", "z"), null);
    // The bridge still answers well-formed calls afterwards.
    assert.equal(
      (webOp(WEB_OP.URL_PARSE, "foo://h/a/../b", undefined, undefined) as string[])[0],
      "foo://h/b",
    );
    assert.equal(webOp(WEB_OP.ENC_DECODE, "gbk", new Uint8Array([0xc4, 0xe3]), false), "你");
  });

  it("attack: a function parses a URL longer than the bridge takes → TypeError, like any invalid URL", () => {
    assert.throws(() => new IURL(`foo://x/${"a".repeat(3 << 20)}`), TypeError);
    assert.equal(new IURL("foo://x/a").href, "foo://x/a");
  });
});
