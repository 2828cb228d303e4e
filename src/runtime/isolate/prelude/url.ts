/**
 * URL and URLSearchParams for the isolate runtime. Parsing and the setters are done by the
 * host's own WHATWG URL parser (Node's, i.e. ada) through one synchronous bridge call each
 * (see ../web-host.ts); the isolate keeps the parsed parts and answers the getters itself.
 * URLSearchParams and the application/x-www-form-urlencoded parser/serializer are plain JS.
 * Why the bridge and not a parser in the prelude: see the isolate executor's README.
 */
import { utf8Decode, utf8Encode } from "./encoding.ts";
import { forEachInitPair, pairIterator, toUSV } from "./iter.ts";
import { WEB_OP, web } from "./web-bridge.ts";

const FORM = (c: number): boolean =>
  !(
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    c === 0x2a ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f
  );

const HEX = "0123456789ABCDEF";

function encode(s: string, set: (c: number) => boolean, spaceAsPlus = false): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      if (spaceAsPlus && c === 0x20) out += "+";
      else if (set(c)) out += `%${HEX[c >> 4]}${HEX[c & 15]}`;
      else out += s[i];
      continue;
    }
    // Non-ASCII: UTF-8 bytes, always encoded. Take the whole surrogate pair.
    const hi = c >= 0xd800 && c <= 0xdbff && i + 1 < s.length ? 2 : 1;
    for (const b of utf8Encode(s.slice(i, i + hi))) out += `%${HEX[b >> 4]}${HEX[b & 15]}`;
    i += hi - 1;
  }
  return out;
}

function percentDecodeBytes(s: string): Uint8Array {
  const bytes = utf8Encode(s);
  const out = new Uint8Array(bytes.length);
  let o = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x25 && i + 2 < bytes.length) {
      const h = String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!);
      if (/^[0-9a-fA-F]{2}$/.test(h)) {
        out[o++] = Number.parseInt(h, 16);
        i += 2;
        continue;
      }
    }
    out[o++] = b;
  }
  return out.subarray(0, o);
}

const HREF = 0;
const PROTOCOL = 1;
const USERNAME = 2;
const PASSWORD = 3;
const HOST = 4;
const HOSTNAME = 5;
const PORT = 6;
const PATHNAME = 7;
const SEARCH = 8;
const HASH = 9;
const ORIGIN = 10;

function invalid(input: string): TypeError {
  const e = new TypeError(`Invalid URL: ${input.length > 200 ? `${input.slice(0, 200)}…` : input}`);
  (e as TypeError & { code: string; input: string }).code = "ERR_INVALID_URL";
  return e;
}

/**
 * URLs the standard's parser would give back unchanged (lower-case http(s), a plain DNS name
 * whose last label starts with a letter or an IPv4 address in its canonical dotted-decimal
 * form (no leading zeros, each part ≤ 255: what the standard serialises), no default port, no dot segments, no character it
 * would percent-encode): parsed here without a host call. Everything else goes to the host.
 * `request.url` is nearly always such a URL, so the hot path stays inside the isolate.
 */
const PLAIN =
  /^(https?):\/\/((?:(?!xn--)[a-z0-9][a-z0-9-]*\.)*(?!xn--)[a-z][a-z0-9-]*|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(?::([1-9][0-9]{0,4}))?(\/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*)?(\?[A-Za-z0-9\-._~!$&()*+,;=:@/?%]*)?(#[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*)?$/;
const DOT_SEGMENT = /\/\.{1,2}(?:\/|$)/;

function plainParts(input: string): string[] | null {
  const m = PLAIN.exec(input);
  if (!m) return null;
  const [, scheme, hostname, port = "", path, query = "", fragment = ""] = m;
  if (path && DOT_SEGMENT.test(path)) return null;
  if (port && (Number(port) > 65535 || port === (scheme === "http" ? "80" : "443"))) return null;
  const protocol = `${scheme}:`;
  const host = port ? `${hostname}:${port}` : hostname!;
  const pathname = path || "/";
  return [
    `${protocol}//${host}${pathname}${query}${fragment}`,
    protocol,
    "",
    "",
    host,
    hostname!,
    port,
    pathname,
    query.length > 1 ? query : "",
    fragment.length > 1 ? fragment : "",
    `${protocol}//${host}`,
  ];
}

function parseParts(input: string, base?: string): string[] | null {
  return (
    (base === undefined ? plainParts(input) : null) ?? (web(WEB_OP.URL_PARSE, input, base) as string[] | null)
  );
}

/** The WHATWG URL class. */
export class URL {
  #p: string[];
  #q: URLSearchParams | null = null;

  constructor(url: unknown, base?: unknown) {
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    if (arguments.length === 0) throw new TypeError("URL: 1 argument required (the URL to parse).");
    const input = toUSV(url);
    const p = parseParts(input, base === undefined ? undefined : toUSV(base));
    if (!p) throw invalid(input);
    this.#p = p;
  }

  static canParse(url: unknown, base?: unknown): boolean {
    return parseParts(toUSV(url), base === undefined ? undefined : toUSV(base)) !== null;
  }

  static parse(url: unknown, base?: unknown): URL | null {
    try {
      return new URL(url, base);
    } catch {
      return null;
    }
  }

  #set(attr: string, v: unknown): void {
    const p = web(WEB_OP.URL_SET, this.#p[HREF], attr, toUSV(v)) as string[] | null;
    if (!p) return;
    this.#p = p;
    if (attr === "search") this.#q?._reset(p[SEARCH]!);
  }

  get href(): string {
    return this.#p[HREF]!;
  }
  set href(v: string) {
    const input = toUSV(v);
    const p = parseParts(input);
    if (!p) throw invalid(input);
    this.#p = p;
    this.#q?._reset(p[SEARCH]!);
  }
  get origin(): string {
    return this.#p[ORIGIN]!;
  }
  get protocol(): string {
    return this.#p[PROTOCOL]!;
  }
  set protocol(v: string) {
    this.#set("protocol", v);
  }
  get username(): string {
    return this.#p[USERNAME]!;
  }
  set username(v: string) {
    this.#set("username", v);
  }
  get password(): string {
    return this.#p[PASSWORD]!;
  }
  set password(v: string) {
    this.#set("password", v);
  }
  get host(): string {
    return this.#p[HOST]!;
  }
  set host(v: string) {
    this.#set("host", v);
  }
  get hostname(): string {
    return this.#p[HOSTNAME]!;
  }
  set hostname(v: string) {
    this.#set("hostname", v);
  }
  get port(): string {
    return this.#p[PORT]!;
  }
  set port(v: string) {
    this.#set("port", v);
  }
  get pathname(): string {
    return this.#p[PATHNAME]!;
  }
  set pathname(v: string) {
    this.#set("pathname", v);
  }
  get search(): string {
    return this.#p[SEARCH]!;
  }
  set search(v: string) {
    this.#set("search", v);
  }
  get searchParams(): URLSearchParams {
    if (!this.#q) {
      this.#q = new URLSearchParams(this.#p[SEARCH]);
      this.#q._url = (query) => this.#set("search", query);
    }
    return this.#q;
  }
  get hash(): string {
    return this.#p[HASH]!;
  }
  set hash(v: string) {
    this.#set("hash", v);
  }
  toString(): string {
    return this.#p[HREF]!;
  }
  toJSON(): string {
    return this.#p[HREF]!;
  }
  get [Symbol.toStringTag](): string {
    return "URL";
  }
}

function formDecode(s: string): string {
  return utf8Decode(percentDecodeBytes(s.replace(/\+/g, " ")));
}

/** Parses application/x-www-form-urlencoded text into name/value pairs. */
export function parseUrlencoded(s: string): [string, string][] {
  const out: [string, string][] = [];
  for (const part of s.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    out.push(
      eq < 0 ? [formDecode(part), ""] : [formDecode(part.slice(0, eq)), formDecode(part.slice(eq + 1))],
    );
  }
  return out;
}

/** Serializes name/value pairs as application/x-www-form-urlencoded text. */
export function serializeUrlencoded(list: readonly (readonly [string, string])[]): string {
  let out = "";
  for (let i = 0; i < list.length; i++) {
    const [k, v] = list[i]!;
    out += `${i ? "&" : ""}${encode(k, FORM, true)}=${encode(v, FORM, true)}`;
  }
  return out;
}

const iterate = pairIterator("URLSearchParams");

/** The WHATWG URLSearchParams class (application/x-www-form-urlencoded). */
export class URLSearchParams {
  #list: [string, string][] = [];
  /** @internal The owning URL's query setter. */
  _url: ((query: string) => void) | undefined;

  constructor(init: unknown = "") {
    if (init instanceof URLSearchParams) {
      this.#list = init.#list.map(([k, v]) => [k, v]);
    } else if ((typeof init === "object" && init !== null) || typeof init === "function") {
      forEachInitPair(init, (k, v) => this.#list.push([toUSV(k), toUSV(v)]), "URLSearchParams");
    } else this._reset(toUSV(init));
  }

  /** @internal Replaces the list by parsing `query` (a leading "?" is dropped). */
  _reset(query: string): void {
    this.#list = parseUrlencoded(query.startsWith("?") ? query.slice(1) : query);
  }

  #update(): void {
    this._url?.(serializeUrlencoded(this.#list));
  }

  get size(): number {
    return this.#list.length;
  }
  append(name: string, value: string): void {
    this.#list.push([toUSV(name), toUSV(value)]);
    this.#update();
  }
  delete(name: string, value?: string): void {
    const n = toUSV(name);
    const v = value === undefined ? undefined : toUSV(value);
    this.#list = this.#list.filter(([k, x]) => !(k === n && (v === undefined || x === v)));
    this.#update();
  }
  get(name: string): string | null {
    const n = toUSV(name);
    for (const [k, v] of this.#list) if (k === n) return v;
    return null;
  }
  getAll(name: string): string[] {
    const n = toUSV(name);
    return this.#list.filter(([k]) => k === n).map(([, v]) => v);
  }
  has(name: string, value?: string): boolean {
    const n = toUSV(name);
    const v = value === undefined ? undefined : toUSV(value);
    return this.#list.some(([k, x]) => k === n && (v === undefined || x === v));
  }
  set(name: string, value: string): void {
    const n = toUSV(name);
    const v = toUSV(value);
    const i = this.#list.findIndex(([k]) => k === n);
    if (i < 0) this.#list.push([n, v]);
    else {
      this.#list[i] = [n, v];
      this.#list = this.#list.filter(([k], j) => j <= i || k !== n);
    }
    this.#update();
  }
  sort(): void {
    // Stable, by UTF-16 code units (Array.prototype.sort is stable).
    this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.#update();
  }
  forEach(cb: (value: string, name: string, params: URLSearchParams) => void, thisArg?: unknown): void {
    if (typeof cb !== "function")
      throw new TypeError("URLSearchParams.forEach: the callback is not a function.");
    for (let i = 0; i < this.#list.length; i++) {
      const [k, v] = this.#list[i]!;
      cb.call(thisArg, v, k, this);
    }
  }
  keys(): IterableIterator<string> {
    return iterate(() => this.#list, 0);
  }
  values(): IterableIterator<string> {
    return iterate(() => this.#list, 1);
  }
  entries(): IterableIterator<[string, string]> {
    return iterate(() => this.#list, 2);
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  toString(): string {
    return serializeUrlencoded(this.#list);
  }
  get [Symbol.toStringTag](): string {
    return "URLSearchParams";
  }
}
