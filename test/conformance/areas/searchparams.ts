/** URLSearchParams and the application/x-www-form-urlencoded parser/serializer, from the URL Standard. */
import { arrayEq, eq, ok, type Suite, throws } from "../harness.ts";

/** Registers the URLSearchParams subtests. */
export function searchParamsTests(t: Suite): void {
  t.area = "URLSearchParams";
  const parse: [string, [string, string][]][] = [
    ["test", [["test", ""]]],
    ["\uFEFFtest=\uFEFF", [["\uFEFFtest", "\uFEFF"]]],
    ["%EF%BB%BFtest=%EF%BB%BF", [["\uFEFFtest", "\uFEFF"]]],
    ["%FE%FF", [["\uFFFD\uFFFD", ""]]],
    ["%FF%FE", [["\uFFFD\uFFFD", ""]]],
    [
      "†&†=x",
      [
        ["†", ""],
        ["†", "x"],
      ],
    ],
    ["%C2", [["\uFFFD", ""]]],
    ["%C2x", [["\uFFFDx", ""]]],
    [
      "_charset_=windows-1252&test=%C2x",
      [
        ["_charset_", "windows-1252"],
        ["test", "\uFFFDx"],
      ],
    ],
    ["", []],
    ["a", [["a", ""]]],
    ["a=b", [["a", "b"]]],
    ["a=", [["a", ""]]],
    ["=b", [["", "b"]]],
    ["&", []],
    ["&a", [["a", ""]]],
    ["a&", [["a", ""]]],
    [
      "a&a",
      [
        ["a", ""],
        ["a", ""],
      ],
    ],
    [
      "a&b&c",
      [
        ["a", ""],
        ["b", ""],
        ["c", ""],
      ],
    ],
    [
      "a=b&c=d",
      [
        ["a", "b"],
        ["c", "d"],
      ],
    ],
    [
      "a=b&c=d&",
      [
        ["a", "b"],
        ["c", "d"],
      ],
    ],
    [
      "&&&a=b&&&&c=d&",
      [
        ["a", "b"],
        ["c", "d"],
      ],
    ],
    [
      "a=a&a=b&a=c",
      [
        ["a", "a"],
        ["a", "b"],
        ["a", "c"],
      ],
    ],
    ["a==a", [["a", "=a"]]],
    ["a=a+b+c+d", [["a", "a b c d"]]],
    ["%=a", [["%", "a"]]],
    ["%a=a", [["%a", "a"]]],
    ["%a_=a", [["%a_", "a"]]],
    ["%61=a", [["a", "a"]]],
    ["%61+%4d%4D=", [["a MM", ""]]],
    [
      "id=0&value=%",
      [
        ["id", "0"],
        ["value", "%"],
      ],
    ],
    ["b=%2sf%2a", [["b", "%2sf*"]]],
    ["b=%2%2af%2a", [["b", "%2*f*"]]],
    ["b=%%2a", [["b", "%*"]]],
  ];
  for (const [input, output] of parse) {
    t.test(`URLSearchParams constructed with: ${input}`, () => {
      arrayEq([...new URLSearchParams(input)], output);
    });
    t.test(`request.formData() with input: ${input}`, async () => {
      const fd = await new Request("http://x/", {
        method: "POST",
        body: input,
        headers: { "content-type": "application/x-www-form-urlencoded;charset=UTF-8" },
      }).formData();
      arrayEq([...fd], output);
    });
  }
  const serialize: [string, string, string][] = [
    ["a", "b c", "a=b+c"],
    ["a b", "c", "a+b=c"],
    ["a", "b-._*c", "a=b-._*c"],
    ["a", "b~c", "a=b%7Ec"],
    ["a", "b+c", "a=b%2Bc"],
    ["a", "b=c", "a=b%3Dc"],
    ["a", "b&c", "a=b%26c"],
    ["a", "b\0c", "a=b%00c"],
    ["a", "b\uD83D\uDCA9c", "a=b%F0%9F%92%A9c"],
    ["a", "b\uD83Dc", "a=b%EF%BF%BDc"],
    ["a", "b\n\rc", "a=b%0A%0Dc"],
  ];
  for (const [k, v, s] of serialize) {
    t.test(`Serialize ${JSON.stringify(v)}`, () => {
      const p = new URLSearchParams();
      p.append(k, v);
      eq(p.toString(), s);
    });
  }
  t.test("URLSearchParams constructor, no arguments", () => eq(new URLSearchParams().toString(), ""));
  t.test("URLSearchParams constructor, remove leading '?'", () =>
    eq(new URLSearchParams("?a=b").toString(), "a=b"),
  );
  t.test("URLSearchParams constructor, {} as argument", () => eq(new URLSearchParams({}).toString(), ""));
  t.test("URLSearchParams constructor, object as argument", () => {
    const p = new URLSearchParams({ a: "1", b: "2" });
    eq(p.toString(), "a=1&b=2");
  });

  t.test("URLSearchParams constructor, sequence of pairs", () => {
    eq(
      new URLSearchParams([
        ["a", "b"],
        ["c", "d"],
      ]).toString(),
      "a=b&c=d",
    );
  });
  t.test("URLSearchParams constructor, pair of wrong length throws", () => {
    throws("TypeError", () => new URLSearchParams([["a", "b", "c"]] as unknown as [string, string][]));
    throws("TypeError", () => new URLSearchParams([["a"]] as unknown as [string, string][]));
  });
  t.test("URLSearchParams constructor, record with lone surrogate key", () => {
    const p = new URLSearchParams({ "a\uD83D": "1" });
    eq([...p.keys()][0], "a\uFFFD");
  });
  t.test("URLSearchParams constructor, URLSearchParams as argument is copied", () => {
    const a = new URLSearchParams("a=b");
    const b = new URLSearchParams(a);
    a.append("c", "d");
    eq(b.toString(), "a=b");
  });

  t.test("append, get, getAll, has, delete", () => {
    const p = new URLSearchParams("a=1");
    p.append("a", "2");
    p.append("b", "3");
    eq(p.get("a"), "1");
    arrayEq(p.getAll("a"), ["1", "2"]);
    ok(p.has("b"));
    ok(p.has("a", "2"));
    ok(!p.has("a", "3"));
    p.delete("a", "1");
    arrayEq(p.getAll("a"), ["2"]);
    p.delete("a");
    eq(p.get("a"), null);
    eq(p.size, 1);
  });
  t.test("set replaces the first and removes the others", () => {
    const p = new URLSearchParams("a=1&b=2&a=3");
    p.set("a", "4");
    eq(p.toString(), "a=4&b=2");
  });
  t.test("sort is stable and by code units", () => {
    const p = new URLSearchParams("z=b&a=b&z=a&a=a&\uFFFD=x&\uD83D\uDE00=y");
    p.sort();
    arrayEq(
      [...p],
      [
        ["a", "b"],
        ["a", "a"],
        ["z", "b"],
        ["z", "a"],
        ["\uD83D\uDE00", "y"],
        ["\uFFFD", "x"],
      ],
    );
  });
  t.test("forEach sees appended entries (live)", () => {
    const p = new URLSearchParams("a=1&b=2");
    const seen: string[] = [];
    p.forEach((v, k) => {
      seen.push(k);
      if (k === "a") p.append("c", "3");
    });
    arrayEq(seen, ["a", "b", "c"]);
  });
  t.test("iteration is live: deleting during for-of", () => {
    const p = new URLSearchParams("param0=0&param1=1&param2=2");
    const seen: string[] = [];
    for (const [k] of p) {
      seen.push(k);
      if (k === "param0") p.delete("param0");
    }
    arrayEq(seen, ["param0", "param2"]);
  });
  t.test("iterator objects have the right prototype", () => {
    const it = new URLSearchParams("a=1").entries();
    eq(Object.prototype.toString.call(it), "[object URLSearchParams Iterator]");
    eq(typeof it.next, "function");
  });
  t.test("URL.searchParams is the same object, and updates the URL", () => {
    const u = new URL("http://x/?a=1");
    const first = u.searchParams;
    ok(first === u.searchParams);
    u.searchParams.append("b", "c d");
    eq(u.href, "http://x/?a=1&b=c+d");
    u.search = "?z=1";
    eq(u.searchParams.get("z"), "1");
    u.searchParams.delete("z");
    eq(u.href, "http://x/");
  });

  t.test("size is an accessor on the prototype", () => {
    ok(Object.getOwnPropertyDescriptor(URLSearchParams.prototype, "size")?.get);
  });
  t.test("toString of an empty value keeps '='", () => eq(new URLSearchParams("a").toString(), "a="));
  t.test("Symbol.toStringTag", () =>
    eq(Object.prototype.toString.call(new URLSearchParams()), "[object URLSearchParams]"),
  );
}
