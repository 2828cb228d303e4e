/**
 * URL: driven by the WPT data files (urltestdata.json: constructor and origin; setters_tests.json;
 * toascii.json and IdnaTestV2.json: hosts through IDNA), checked the way the URL Standard says.
 */
import { eq, type Suite, throws } from "../harness.ts";

/** The data files this area reads (any may be absent). */
export interface UrlData {
  urltestdata?: unknown[];
  setters?: Record<string, unknown>;
  toascii?: unknown[];
  idna?: unknown[];
}

interface ParseCase {
  input: string;
  base: string | null;
  failure?: boolean;
  origin?: string;
  [k: string]: unknown;
}

const PARTS = [
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
];

/** Cases from the URL Standard that run even without the data files: [input, base, href]. */
const OWN: [string, string | null, string][] = [
  ["foo://", "http://example.org/foo/bar", "foo://"],
  ["i", "sc:///pa/pa", "sc:///pa/i"],
  ["a://example.net", null, "a://example.net"],
  ["http://[1:0::]", null, "http://[1::]/"],
  ["??a=b", "http://example.org/foo/bar", "http://example.org/foo/bar??a=b"],
  ["http:/example.com/", "http://example.org/foo/bar", "http://example.org/example.com/"],
  ["C|/foo/bar", "file:///tmp/mock/path", "file:///C:/foo/bar"],
  ["https://fa\u00df.ExAmPlE/", null, "https://xn--fa-hia.example/"],
  ["http://example.com/\u{1F600}?q=\u00e9#\u00e9", null, "http://example.com/%F0%9F%98%80?q=%C3%A9#%C3%A9"],
  ["file://localhost/C:/x", null, "file:///C:/x"],
  ["non-spec:/.//p", null, "non-spec:/.//p"],
  ["http://0x7f.1/", null, "http://127.0.0.1/"],
];

/** Registers the URL subtests. */
export function urlTests(t: Suite, data: UrlData): void {
  t.area = "URL";
  for (const [input, base, href] of OWN) {
    t.test(`Standard: <${input}> against <${base}>`, () =>
      eq(new URL(input, base ?? undefined).href, href, "href"),
    );
  }
  t.test("Standard: setters strip tab and newline", () => {
    const u = new URL("http://example.com/");
    u.pathname = "\t/te\nst";
    eq(u.href, "http://example.com/test");
    const v = new URL("sc://x/");
    v.host = "\u0000";
    eq(v.href, "sc://x/");
  });
  for (const c of (data.urltestdata ?? []) as (ParseCase | string)[]) {
    if (typeof c === "string") continue;
    const make = () => (c.base === null ? new URL(c.input) : new URL(c.input, c.base));
    t.test(`Parsing: <${c.input}> against <${c.base}>`, () => {
      if (c.failure) {
        throws("TypeError", make, "new URL");
        eq(URL.canParse(c.input, c.base ?? undefined), false, "URL.canParse");
        return;
      }
      const u = make();
      for (const k of PARTS) eq(u[k as "href"], c[k], k);
      if ("searchParams" in c) eq(u.searchParams.toString(), c.searchParams, "searchParams");
      eq(URL.canParse(c.input, c.base ?? undefined), true, "URL.canParse");
    });
    if (c.origin !== undefined) {
      t.test(`Origin parsing: <${c.input}> against <${c.base}>`, () => eq(make().origin, c.origin, "origin"));
    }
  }
  for (const [attr, cases] of Object.entries(data.setters ?? {})) {
    if (attr === "comment") continue;
    for (const c of cases as { href: string; new_value: string; expected: Record<string, string> }[]) {
      t.test(`URL: Setting <${c.href}>.${attr} = '${c.new_value}'`, () => {
        const u = new URL(c.href);
        (u as unknown as Record<string, string>)[attr] = c.new_value;
        for (const [k, v] of Object.entries(c.expected)) eq(u[k as "href"], v, k);
      });
    }
  }
  t.area = "URL (IDNA hosts)";
  const hostCases = (list: unknown[] | undefined, label: string) => {
    for (const c of (list ?? []) as ({ input: string; output: string | null } | string)[]) {
      if (typeof c === "string") continue;
      t.test(`${label}: ${c.input} (url)`, () => {
        if (c.output === null) throws("TypeError", () => new URL(`https://${c.input}/x`));
        else {
          const u = new URL(`https://${c.input}/x`);
          eq(u.host, c.output, "host");
          eq(u.hostname, c.output, "hostname");
          eq(u.pathname, "/x", "pathname");
          eq(u.href, `https://${c.output}/x`, "href");
        }
      });
      if (label !== "ToASCII") continue;
      for (const attr of ["host", "hostname"] as const) {
        t.test(`${label}: ${c.input} (${attr} setter)`, () => {
          const u = new URL("https://x/x");
          u[attr] = c.input;
          eq(u[attr], c.output ?? "x", attr);
        });
      }
    }
  };
  hostCases(data.toascii, "ToASCII");
  hostCases(data.idna, "IdnaTestV2");
}
