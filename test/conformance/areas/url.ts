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

/** Registers the URL subtests. */
export function urlTests(t: Suite, data: UrlData): void {
  t.area = "URL";
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
