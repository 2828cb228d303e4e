/**
 * URL and URLSearchParams for the isolate runtime: the WHATWG URL parser's behaviour for
 * what functions meet (special schemes with authority, relative resolution, dot segments,
 * percent-encoding sets, IPv4/IPv6 hosts, default ports, opaque paths such as `mailto:`).
 * Non-ASCII host names (IDNA) are rejected rather than mis-encoded.
 */
import { utf8Decode, utf8Encode } from "./encoding.ts";

const SPECIAL: Record<string, number | null> = {
  "ftp:": 21,
  "file:": null,
  "http:": 80,
  "https:": 443,
  "ws:": 80,
  "wss:": 443,
};

// Percent-encode sets (https://url.spec.whatwg.org/#percent-encoded-bytes), as predicates on a code point.
const C0 = (c: number): boolean => c < 0x20 || c > 0x7e;
const FRAGMENT = (c: number): boolean =>
  C0(c) || c === 0x20 || c === 0x22 || c === 0x3c || c === 0x3e || c === 0x60;
const QUERY = (c: number): boolean =>
  C0(c) || c === 0x20 || c === 0x22 || c === 0x23 || c === 0x3c || c === 0x3e;
const SPECIAL_QUERY = (c: number): boolean => QUERY(c) || c === 0x27;
const PATH = (c: number): boolean =>
  QUERY(c) || c === 0x3f || c === 0x5e || c === 0x60 || c === 0x7b || c === 0x7d;
const USERINFO = (c: number): boolean =>
  PATH(c) ||
  c === 0x2f ||
  c === 0x3a ||
  c === 0x3b ||
  c === 0x3d ||
  c === 0x40 ||
  (c >= 0x5b && c <= 0x5d) ||
  c === 0x7c;
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

function invalid(input: string): TypeError {
  const e = new TypeError(`Invalid URL: ${input}`);
  (e as TypeError & { code: string }).code = "ERR_INVALID_URL";
  return e;
}

function parseIPv4Number(part: string): number {
  if (part === "") return Number.NaN;
  if (/^0[xX]/.test(part))
    return part.length === 2
      ? 0
      : /^0[xX][0-9a-fA-F]+$/.test(part)
        ? Number.parseInt(part.slice(2), 16)
        : Number.NaN;
  if (part.length > 1 && part[0] === "0")
    return /^[0-7]+$/.test(part) ? Number.parseInt(part, 8) : Number.NaN;
  return /^[0-9]+$/.test(part) ? Number(part) : Number.NaN;
}

/** Returns the serialised IPv4 address if `host` is one (in any of the legacy notations). */
function parseIPv4(host: string, input: string): string | undefined {
  const parts = host.split(".");
  if (parts[parts.length - 1] === "" && parts.length > 1) parts.pop();
  const last = parts[parts.length - 1]!;
  // Only a host whose last label is numeric is an IPv4 address.
  if (!/^(0[xX][0-9a-fA-F]*|[0-9]+)$/.test(last)) return undefined;
  if (parts.length > 4) throw invalid(input);
  const nums = parts.map(parseIPv4Number);
  if (nums.some((n) => Number.isNaN(n))) throw invalid(input);
  for (let i = 0; i < nums.length - 1; i++) if (nums[i]! > 255) throw invalid(input);
  if (nums[nums.length - 1]! >= 256 ** (5 - nums.length)) throw invalid(input);
  let ipv4 = nums[nums.length - 1]!;
  for (let i = 0; i < nums.length - 1; i++) ipv4 += nums[i]! * 256 ** (3 - i);
  const out: number[] = [];
  for (let i = 0; i < 4; i++) {
    out.unshift(ipv4 % 256);
    ipv4 = Math.floor(ipv4 / 256);
  }
  return out.join(".");
}

function parseIPv6(s: string, input: string): string {
  const pieces = new Array<number>(8).fill(0);
  let compress = -1;
  let idx = 0;
  let rest = s;
  if (rest.startsWith("::")) {
    compress = 0;
    rest = rest.slice(2);
  } else if (rest.startsWith(":")) throw invalid(input);
  const groups = rest === "" ? [] : rest.split(":");
  for (let g = 0; g < groups.length; g++) {
    const part = groups[g]!;
    if (part === "") {
      if (compress >= 0) throw invalid(input);
      compress = idx;
      continue;
    }
    if (part.includes(".")) {
      if (g !== groups.length - 1 || idx > 6) throw invalid(input);
      const v4 = part.split(".");
      if (v4.length !== 4 || v4.some((p) => !/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255))
        throw invalid(input);
      pieces[idx++] = Number(v4[0]) * 256 + Number(v4[1]);
      pieces[idx++] = Number(v4[2]) * 256 + Number(v4[3]);
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(part) || idx >= 8) throw invalid(input);
    pieces[idx++] = Number.parseInt(part, 16);
  }
  if (compress >= 0) {
    const moved = pieces.slice(compress, idx);
    for (let i = compress; i < 8; i++) pieces[i] = 0;
    for (let i = 0; i < moved.length; i++) pieces[8 - moved.length + i] = moved[i]!;
  } else if (idx !== 8) throw invalid(input);
  // Serialise: compress the first longest run of two or more zero pieces.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (pieces[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && pieces[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? "::" : ":";
      i += bestLen - 1;
      continue;
    }
    out += pieces[i]!.toString(16);
    if (i < 7) out += ":";
  }
  return `[${out}]`;
}

function parseHost(raw: string, special: boolean, input: string): string {
  if (raw.startsWith("[")) {
    if (!raw.endsWith("]")) throw invalid(input);
    return parseIPv6(raw.slice(1, -1), input);
  }
  if (!special) {
    if (/[\0\t\n\r #/:<>?@[\\\]^|]/.test(raw)) throw invalid(input);
    return encode(raw, C0);
  }
  const domain = utf8Decode(percentDecodeBytes(raw)).toLowerCase();
  if (domain === "" || /[^\x20-\x7e]/.test(domain)) {
    if (domain !== "")
      throw new TypeError(
        `Invalid URL: ${input} (internationalised host names are not supported in the isolate runtime; use the punycode form)`,
      );
    throw invalid(input);
  }
  if (/[\0\t\n\r #%/:<>?@[\\\]^|]/.test(domain)) throw invalid(input);
  return parseIPv4(domain, input) ?? domain;
}

interface Parts {
  protocol: string;
  username: string;
  password: string;
  hostname: string;
  port: string;
  /** Path segments, or an opaque path string. */
  path: string[] | string;
  query: string | null;
  fragment: string | null;
}

function isSingleDot(s: string): boolean {
  return s === "." || s.toLowerCase() === "%2e";
}
function isDoubleDot(s: string): boolean {
  const l = s.toLowerCase();
  return l === ".." || l === ".%2e" || l === "%2e." || l === "%2e%2e";
}

/** Resolves a path string onto `base` segments. */
function parsePath(path: string, special: boolean, base: string[], isFile: boolean): string[] {
  const segs = base.slice();
  const raw = special ? path.replace(/\\/g, "/") : path;
  const parts = raw.split("/");
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const last = i === parts.length - 1;
    if (isDoubleDot(p)) {
      if (!(isFile && segs.length === 1 && /^[A-Za-z]:$/.test(segs[0]!))) segs.pop();
      if (last) segs.push("");
    } else if (isSingleDot(p)) {
      if (last) segs.push("");
    } else segs.push(encode(p, PATH));
  }
  return segs;
}

function splitSuffix(s: string): { rest: string; query: string | null; fragment: string | null } {
  let fragment: string | null = null;
  let query: string | null = null;
  let rest = s;
  const h = rest.indexOf("#");
  if (h >= 0) {
    fragment = rest.slice(h + 1);
    rest = rest.slice(0, h);
  }
  const q = rest.indexOf("?");
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  return { rest, query, fragment };
}

function parse(input: string, base?: Parts): Parts {
  const original = input;
  // Leading/trailing C0 controls and spaces go; tabs and newlines anywhere go.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the standard strips exactly these
  const s = input.replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, "").replace(/[\t\n\r]/g, "");
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(s);
  let protocol: string;
  let rest: string;
  if (m) {
    protocol = `${m[1]!.toLowerCase()}:`;
    rest = s.slice(m[0].length);
    const special = protocol in SPECIAL;
    // "http:foo" against an http base is relative (special schemes only).
    if (special && base && base.protocol === protocol && !/^[/\\]/.test(rest) && protocol !== "file:") {
      return relative(rest, base, original);
    }
    if (special) {
      const afterSlashes = rest.replace(/^[/\\]*/, "");
      if (protocol === "file:") return fileUrl(rest, original);
      return authority(protocol, afterSlashes, original);
    }
    if (rest.startsWith("//")) return authority(protocol, rest.slice(2), original);
    const sfx = splitSuffix(rest);
    if (sfx.rest.startsWith("/")) {
      return {
        protocol,
        username: "",
        password: "",
        hostname: "",
        port: "",
        path: parsePath(sfx.rest.slice(1), false, [], false),
        query: sfx.query === null ? null : encode(sfx.query, QUERY),
        fragment: sfx.fragment === null ? null : encode(sfx.fragment, FRAGMENT),
      };
    }
    return {
      protocol,
      username: "",
      password: "",
      hostname: "",
      port: "",
      path: encode(sfx.rest, C0),
      query: sfx.query === null ? null : encode(sfx.query, QUERY),
      fragment: sfx.fragment === null ? null : encode(sfx.fragment, FRAGMENT),
    };
  }
  if (!base) throw invalid(original);
  if (typeof base.path === "string") {
    if (!s.startsWith("#")) throw invalid(original);
    return { ...base, fragment: encode(s.slice(1), FRAGMENT) };
  }
  return relative(s, base, original);
}

function relative(s: string, base: Parts, original: string): Parts {
  const special = base.protocol in SPECIAL;
  const slash = special ? /^[/\\]{2}/ : /^\/\//;
  if (slash.test(s)) {
    if (base.protocol === "file:") return fileUrl(s, original);
    return authority(base.protocol, s.slice(2), original);
  }
  const sfx = splitSuffix(s);
  const qset = special ? SPECIAL_QUERY : QUERY;
  const out: Parts = { ...base, fragment: sfx.fragment === null ? null : encode(sfx.fragment, FRAGMENT) };
  if (sfx.rest === "") {
    out.query = sfx.query === null ? base.query : encode(sfx.query, qset);
    if (sfx.query === null && sfx.fragment === null) out.fragment = null;
    return out;
  }
  out.query = sfx.query === null ? null : encode(sfx.query, qset);
  const basePath = base.path as string[];
  if (/^[/\\]/.test(sfx.rest) && (special || sfx.rest[0] === "/")) {
    out.path = parsePath(sfx.rest.slice(1), special, [], base.protocol === "file:");
  } else {
    out.path = parsePath(sfx.rest, special, basePath.slice(0, -1), base.protocol === "file:");
  }
  return out;
}

function authority(protocol: string, s: string, original: string): Parts {
  const special = protocol in SPECIAL;
  const end = s.search(special ? /[/\\?#]/ : /[/?#]/);
  const auth = end < 0 ? s : s.slice(0, end);
  const after = end < 0 ? "" : s.slice(end);
  let username = "";
  let password = "";
  let hostport = auth;
  const at = auth.lastIndexOf("@");
  if (at >= 0) {
    const info = auth.slice(0, at);
    hostport = auth.slice(at + 1);
    const colon = info.indexOf(":");
    username = encode(colon < 0 ? info : info.slice(0, colon), USERINFO);
    password = colon < 0 ? "" : encode(info.slice(colon + 1), USERINFO);
  }
  let hostRaw = hostport;
  let port = "";
  const pm = /:([^:\]]*)$/.exec(hostport);
  if (pm) {
    hostRaw = hostport.slice(0, pm.index);
    if (pm[1] !== "") {
      if (!/^[0-9]+$/.test(pm[1]!) || Number(pm[1]) > 65535) throw invalid(original);
      port = String(Number(pm[1]));
      if (SPECIAL[protocol] === Number(port)) port = "";
    }
  }
  if (hostRaw === "" && special) throw invalid(original);
  const hostname = hostRaw === "" ? "" : parseHost(hostRaw, special, original);
  const sfx = splitSuffix(after);
  let path: string[] = [];
  if (sfx.rest !== "") path = parsePath(sfx.rest.slice(1), special, [], false);
  else if (special) path = [""];
  return {
    protocol,
    username,
    password,
    hostname,
    port,
    path,
    query: sfx.query === null ? null : encode(sfx.query, special ? SPECIAL_QUERY : QUERY),
    fragment: sfx.fragment === null ? null : encode(sfx.fragment, FRAGMENT),
  };
}

function fileUrl(s: string, original: string): Parts {
  const stripped = s.replace(/^[/\\]{2}/, "");
  const hadAuthority = stripped !== s;
  let hostname = "";
  let rest = stripped;
  if (hadAuthority) {
    const end = rest.search(/[/\\?#]/);
    const host = end < 0 ? rest : rest.slice(0, end);
    rest = end < 0 ? "" : rest.slice(end);
    hostname = host === "" ? "" : parseHost(host, true, original);
    if (hostname === "localhost") hostname = "";
  }
  const sfx = splitSuffix(rest);
  return {
    protocol: "file:",
    username: "",
    password: "",
    hostname,
    port: "",
    path: parsePath(sfx.rest.replace(/^[/\\]/, ""), true, [], true),
    query: sfx.query === null ? null : encode(sfx.query, SPECIAL_QUERY),
    fragment: sfx.fragment === null ? null : encode(sfx.fragment, FRAGMENT),
  };
}

function pathString(p: Parts): string {
  if (typeof p.path === "string") return p.path;
  const joined = `/${p.path.join("/")}`;
  // A path starting with "//" without a host would read as an authority.
  return p.hostname === "" && p.path.length > 1 && p.path[0] === "" && !(p.protocol in SPECIAL)
    ? `/.${joined}`
    : joined;
}

function serialize(p: Parts, excludeFragment = false): string {
  let out = p.protocol;
  const hasAuthority =
    p.hostname !== "" || p.protocol === "file:" || (typeof p.path !== "string" && p.protocol in SPECIAL);
  if (hasAuthority || p.username || p.password) {
    out += "//";
    if (p.username || p.password) {
      out += p.username;
      if (p.password) out += `:${p.password}`;
      out += "@";
    }
    out += p.hostname;
    if (p.port) out += `:${p.port}`;
  }
  out += pathString(p);
  if (p.query !== null) out += `?${p.query}`;
  if (!excludeFragment && p.fragment !== null) out += `#${p.fragment}`;
  return out;
}

const PARTS = Symbol("parts");
const PARAMS = Symbol("params");

/** The WHATWG URL class. */
export class URL {
  [PARTS]: Parts;
  [PARAMS]: URLSearchParams | undefined;

  constructor(url: string | URL, base?: string | URL) {
    const baseParts =
      base === undefined ? undefined : base instanceof URL ? base[PARTS] : parse(String(base));
    this[PARTS] = parse(String(url), baseParts);
    this[PARAMS] = undefined;
  }

  static canParse(url: string, base?: string): boolean {
    try {
      new URL(url, base);
      return true;
    } catch {
      return false;
    }
  }

  static parse(url: string, base?: string): URL | null {
    try {
      return new URL(url, base);
    } catch {
      return null;
    }
  }

  get href(): string {
    return serialize(this[PARTS]);
  }
  set href(v: string) {
    this[PARTS] = parse(String(v));
    this[PARAMS]?._reset(this[PARTS].query ?? "");
  }
  get origin(): string {
    const p = this[PARTS];
    if (p.protocol === "blob:") {
      try {
        return new URL(pathString(p)).origin;
      } catch {
        return "null";
      }
    }
    if (!(p.protocol in SPECIAL) || p.protocol === "file:") return "null";
    return `${p.protocol}//${p.hostname}${p.port ? `:${p.port}` : ""}`;
  }
  get protocol(): string {
    return this[PARTS].protocol;
  }
  set protocol(v: string) {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*)/.exec(String(v));
    if (!m) return;
    const proto = `${m[1]!.toLowerCase()}:`;
    const p = this[PARTS];
    if (proto in SPECIAL !== p.protocol in SPECIAL) return;
    p.protocol = proto;
    if (SPECIAL[proto] === Number(p.port)) p.port = "";
  }
  get username(): string {
    return this[PARTS].username;
  }
  set username(v: string) {
    if (this[PARTS].hostname) this[PARTS].username = encode(String(v), USERINFO);
  }
  get password(): string {
    return this[PARTS].password;
  }
  set password(v: string) {
    if (this[PARTS].hostname) this[PARTS].password = encode(String(v), USERINFO);
  }
  get host(): string {
    const p = this[PARTS];
    return p.port ? `${p.hostname}:${p.port}` : p.hostname;
  }
  set host(v: string) {
    const p = this[PARTS];
    if (typeof p.path === "string") return;
    try {
      const q = parse(`${p.protocol}//${String(v).split(/[/?#]/)[0]}/`);
      p.hostname = q.hostname;
      if (/:/.test(String(v).replace(/\[.*\]/, ""))) p.port = q.port;
    } catch {
      // Invalid hosts are ignored, as the standard says.
    }
  }
  get hostname(): string {
    return this[PARTS].hostname;
  }
  set hostname(v: string) {
    const p = this[PARTS];
    if (typeof p.path === "string") return;
    try {
      p.hostname = parse(`${p.protocol}//${String(v).split(/[/?#:]/)[0]}/`).hostname;
    } catch {
      // Ignored.
    }
  }
  get port(): string {
    return this[PARTS].port;
  }
  set port(v: string) {
    const p = this[PARTS];
    const s = String(v);
    if (s === "") {
      p.port = "";
      return;
    }
    const m = /^[0-9]+/.exec(s);
    if (!m || Number(m[0]) > 65535) return;
    p.port = SPECIAL[p.protocol] === Number(m[0]) ? "" : String(Number(m[0]));
  }
  get pathname(): string {
    return pathString(this[PARTS]);
  }
  set pathname(v: string) {
    const p = this[PARTS];
    if (typeof p.path === "string") return;
    const special = p.protocol in SPECIAL;
    const s = String(v);
    p.path = parsePath(/^[/\\]/.test(s) ? s.slice(1) : s, special, [], p.protocol === "file:");
  }
  get search(): string {
    const q = this[PARTS].query;
    return q === null || q === "" ? "" : `?${q}`;
  }
  set search(v: string) {
    let s = String(v);
    if (s.startsWith("?")) s = s.slice(1);
    this[PARTS].query = s === "" ? null : encode(s, this[PARTS].protocol in SPECIAL ? SPECIAL_QUERY : QUERY);
    this[PARAMS]?._reset(s);
  }
  get searchParams(): URLSearchParams {
    if (!this[PARAMS]) {
      const params = new URLSearchParams(this[PARTS].query ?? "");
      params._url = this;
      this[PARAMS] = params;
    }
    return this[PARAMS];
  }
  get hash(): string {
    const f = this[PARTS].fragment;
    return f === null || f === "" ? "" : `#${f}`;
  }
  set hash(v: string) {
    let s = String(v);
    if (s.startsWith("#")) s = s.slice(1);
    this[PARTS].fragment = s === "" ? null : encode(s, FRAGMENT);
  }
  toString(): string {
    return this.href;
  }
  toJSON(): string {
    return this.href;
  }
  /** @internal Used by URLSearchParams to write back. */
  _setQuery(q: string): void {
    this[PARTS].query = q === "" ? null : q;
  }
}

function formDecode(s: string): string {
  return utf8Decode(percentDecodeBytes(s.replace(/\+/g, " ")));
}

/** The WHATWG URLSearchParams class (application/x-www-form-urlencoded). */
export class URLSearchParams {
  private list: [string, string][] = [];
  /** @internal */
  _url: URL | undefined;

  constructor(init?: string | Record<string, string> | Iterable<[string, string]> | URLSearchParams) {
    if (init === undefined || init === null) return;
    if (typeof init === "object" && typeof (init as Iterable<unknown>)[Symbol.iterator] === "function") {
      for (const pair of init as Iterable<Iterable<string>>) {
        const arr = [...pair];
        if (arr.length !== 2) throw new TypeError("Each query pair must be an iterable [name, value] tuple.");
        this.list.push([String(arr[0]), String(arr[1])]);
      }
    } else if (typeof init === "object") {
      for (const k of Object.keys(init)) this.list.push([k, String((init as Record<string, string>)[k])]);
    } else this._reset(String(init));
  }

  /** @internal */
  _reset(query: string): void {
    const s = query.startsWith("?") ? query.slice(1) : query;
    this.list = [];
    for (const part of s.split("&")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      this.list.push(
        eq < 0 ? [formDecode(part), ""] : [formDecode(part.slice(0, eq)), formDecode(part.slice(eq + 1))],
      );
    }
  }

  private update(): void {
    this._url?._setQuery(this.toString());
  }

  get size(): number {
    return this.list.length;
  }
  append(name: string, value: string): void {
    this.list.push([String(name), String(value)]);
    this.update();
  }
  delete(name: string, value?: string): void {
    const n = String(name);
    this.list = this.list.filter(([k, v]) => !(k === n && (value === undefined || v === String(value))));
    this.update();
  }
  get(name: string): string | null {
    const n = String(name);
    for (const [k, v] of this.list) if (k === n) return v;
    return null;
  }
  getAll(name: string): string[] {
    const n = String(name);
    return this.list.filter(([k]) => k === n).map(([, v]) => v);
  }
  has(name: string, value?: string): boolean {
    const n = String(name);
    return this.list.some(([k, v]) => k === n && (value === undefined || v === String(value)));
  }
  set(name: string, value: string): void {
    const n = String(name);
    const i = this.list.findIndex(([k]) => k === n);
    if (i < 0) this.list.push([n, String(value)]);
    else {
      this.list[i] = [n, String(value)];
      this.list = this.list.filter(([k], j) => j <= i || k !== n);
    }
    this.update();
  }
  sort(): void {
    this.list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.update();
  }
  forEach(cb: (value: string, name: string, params: URLSearchParams) => void, thisArg?: unknown): void {
    for (const [k, v] of this.list) cb.call(thisArg, v, k, this);
  }
  keys(): IterableIterator<string> {
    return this.list.map(([k]) => k)[Symbol.iterator]();
  }
  values(): IterableIterator<string> {
    return this.list.map(([, v]) => v)[Symbol.iterator]();
  }
  entries(): IterableIterator<[string, string]> {
    return this.list.map(([k, v]) => [k, v] as [string, string])[Symbol.iterator]();
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  toString(): string {
    return this.list.map(([k, v]) => `${encode(k, FORM, true)}=${encode(v, FORM, true)}`).join("&");
  }
}
