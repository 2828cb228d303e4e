/**
 * Headers, Request, Response and Blob for the isolate runtime (the Fetch Standard's shapes).
 * A body made from bytes or text is kept as bytes, and becomes a ReadableStream only when
 * someone asks for `.body` — so the runtime can send a plain response in one piece and
 * stream only what really is a stream.
 */
import { ReadableStream } from "web-streams-polyfill";
import { utf8Decode, utf8Encode } from "./encoding.ts";
import { AbortController, type AbortSignal } from "./events.ts";
import { URL, URLSearchParams } from "./url.ts";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function normName(name: string): string {
  const n = String(name);
  if (!TOKEN.test(n)) throw new TypeError(`Invalid header name: ${JSON.stringify(n)}`);
  return n.toLowerCase();
}
function normValue(value: string): string {
  const v = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (/[\0\n\r]/.test(v)) throw new TypeError(`Invalid header value: ${JSON.stringify(v)}`);
  return v;
}

export type HeadersInit = Headers | [string, string][] | Record<string, string>;

/** The Fetch Standard's Headers. */
export class Headers {
  /** Lower-case name → values (set-cookie kept apart, others combined with ", "). */
  private readonly map = new Map<string, string[]>();
  /** @internal "immutable" guard for responses of fetch(). */
  _guard: "none" | "immutable" = "none";

  constructor(init?: HeadersInit | Iterable<[string, string]>) {
    if (init === undefined || init === null) return;
    if (init instanceof Headers) {
      for (const [k, vs] of init.map) this.map.set(k, vs.slice());
    } else if (typeof (init as Iterable<unknown>)[Symbol.iterator] === "function") {
      for (const pair of init as Iterable<Iterable<string>>) {
        const arr = [...pair];
        if (arr.length !== 2) throw new TypeError("Each header pair must be a [name, value] tuple.");
        this.append(arr[0]!, arr[1]!);
      }
    } else if (typeof init === "object") {
      for (const k of Object.keys(init)) this.append(k, (init as Record<string, string>)[k]!);
    } else throw new TypeError("Headers init must be an object or an iterable of pairs.");
  }

  private check(): void {
    if (this._guard === "immutable") throw new TypeError("These headers are immutable.");
  }
  append(name: string, value: string): void {
    this.check();
    const n = normName(name);
    const v = normValue(value);
    const list = this.map.get(n);
    if (list) list.push(v);
    else this.map.set(n, [v]);
  }
  set(name: string, value: string): void {
    this.check();
    this.map.set(normName(name), [normValue(value)]);
  }
  delete(name: string): void {
    this.check();
    this.map.delete(normName(name));
  }
  get(name: string): string | null {
    const list = this.map.get(normName(name));
    if (!list) return null;
    return list.join(", ");
  }
  getSetCookie(): string[] {
    return (this.map.get("set-cookie") ?? []).slice();
  }
  has(name: string): boolean {
    return this.map.has(normName(name));
  }
  forEach(cb: (value: string, name: string, headers: Headers) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) cb.call(thisArg, v, k, this);
  }
  *entries(): IterableIterator<[string, string]> {
    const names = [...this.map.keys()].sort();
    for (const n of names) {
      const list = this.map.get(n);
      if (!list) continue;
      if (n === "set-cookie") for (const v of list) yield [n, v];
      else yield [n, list.join(", ")];
    }
  }
  *keys(): IterableIterator<string> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): IterableIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
  /** @internal Pairs in wire form: one pair per set-cookie, others combined. */
  _pairs(): [string, string][] {
    const out: [string, string][] = [];
    for (const [n, list] of this.map) {
      if (n === "set-cookie") for (const v of list) out.push([n, v]);
      else out.push([n, list.join(", ")]);
    }
    return out;
  }
}

/** A Blob (bytes + type). */
export class Blob {
  /** @internal */
  readonly _bytes: Uint8Array;
  readonly type: string;

  constructor(parts: unknown[] = [], options: { type?: string } = {}) {
    const chunks = parts.map(toBytesPart);
    const size = chunks.reduce((n, c) => n + c.byteLength, 0);
    const bytes = new Uint8Array(size);
    let o = 0;
    for (const c of chunks) {
      bytes.set(c, o);
      o += c.byteLength;
    }
    this._bytes = bytes;
    this.type = options.type ? String(options.type).toLowerCase() : "";
  }
  get size(): number {
    return this._bytes.byteLength;
  }
  slice(start = 0, end = this.size, type = ""): Blob {
    return new Blob([this._bytes.slice(start, end)], { type });
  }
  async text(): Promise<string> {
    return utf8Decode(this._bytes);
  }
  async arrayBuffer(): Promise<ArrayBuffer> {
    return this._bytes.slice().buffer;
  }
  async bytes(): Promise<Uint8Array> {
    return this._bytes.slice();
  }
  stream(): ReadableStream<Uint8Array> {
    return bytesStream(this._bytes.slice());
  }
}

/** A File (a named Blob). */
export class File extends Blob {
  readonly name: string;
  readonly lastModified: number;
  constructor(parts: unknown[], name: string, options: { type?: string; lastModified?: number } = {}) {
    super(parts, options);
    this.name = String(name);
    this.lastModified = options.lastModified ?? Date.now();
  }
}

function toBytesPart(p: unknown): Uint8Array {
  if (p instanceof Blob) return p._bytes;
  if (p instanceof ArrayBuffer) return new Uint8Array(p.slice(0));
  if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength));
  return utf8Encode(String(p));
}

function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(c) {
      if (bytes.byteLength > 0) c.enqueue(bytes);
      c.close();
    },
  });
}

/** What a body was made from, normalised. */
interface BodyInitResult {
  bytes?: Uint8Array;
  stream?: ReadableStream<Uint8Array>;
  type?: string;
}

function extractBody(init: unknown): BodyInitResult {
  if (init === undefined || init === null) return {};
  if (typeof init === "string") return { bytes: utf8Encode(init), type: "text/plain;charset=UTF-8" };
  if (init instanceof URLSearchParams) {
    return { bytes: utf8Encode(init.toString()), type: "application/x-www-form-urlencoded;charset=UTF-8" };
  }
  if (init instanceof Blob) return { bytes: init._bytes, type: init.type || undefined };
  if (init instanceof ArrayBuffer) return { bytes: new Uint8Array(init.slice(0)) };
  if (ArrayBuffer.isView(init))
    return { bytes: new Uint8Array(init.buffer.slice(init.byteOffset, init.byteOffset + init.byteLength)) };
  if (init instanceof ReadableStream) return { stream: init as ReadableStream<Uint8Array> };
  if (typeof (init as { getReader?: unknown }).getReader === "function")
    return { stream: init as ReadableStream<Uint8Array> };
  if (
    typeof init === "object" &&
    typeof (init as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function"
  ) {
    return { stream: ReadableStream.from(init as AsyncIterable<Uint8Array>) as ReadableStream<Uint8Array> };
  }
  if ((init as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === "FormData") {
    throw new TypeError(
      "FormData bodies are not supported in the isolate runtime; send JSON or URLSearchParams.",
    );
  }
  return { bytes: utf8Encode(String(init)), type: "text/plain;charset=UTF-8" };
}

function toU8(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === "string") return utf8Encode(chunk);
  throw new TypeError(
    `A body stream chunk must be a Uint8Array (got ${typeof chunk}); encode text with TextEncoder.`,
  );
}

/** Reads a whole stream into bytes. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const u = toU8(value);
    chunks.push(u);
    size += u.byteLength;
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/** The Body mixin shared by Request and Response. */
class Body {
  /** @internal */ _bytes: Uint8Array | undefined;
  /** @internal */ _stream: ReadableStream<Uint8Array> | undefined;
  /** @internal */ _used = false;
  readonly headers: Headers;

  constructor(headers: Headers) {
    this.headers = headers;
  }

  /** @internal */
  _setBody(init: unknown): void {
    const b = extractBody(init);
    this._bytes = b.bytes;
    this._stream = b.stream;
    if (b.type && !this.headers.has("content-type")) this.headers.set("content-type", b.type);
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this._stream) return this._stream;
    if (this._bytes === undefined) return null;
    this._stream = bytesStream(this._bytes);
    this._bytes = undefined;
    return this._stream;
  }
  get bodyUsed(): boolean {
    return (
      this._used || Boolean((this._stream as unknown as { _disturbed?: boolean } | undefined)?._disturbed)
    );
  }

  /** @internal The body's bytes, consuming it. */
  async _consume(): Promise<Uint8Array> {
    if (this.bodyUsed) throw new TypeError("Body has already been consumed.");
    this._used = true;
    if (this._stream) return readAll(this._stream);
    return this._bytes ?? new Uint8Array(0);
  }
  async arrayBuffer(): Promise<ArrayBuffer> {
    const b = await this._consume();
    return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
      ? (b.buffer as ArrayBuffer)
      : b.slice().buffer;
  }
  async bytes(): Promise<Uint8Array> {
    return new Uint8Array(await this.arrayBuffer());
  }
  async text(): Promise<string> {
    const b = await this._consume();
    const s = utf8Decode(b);
    return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
  }
  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
  async blob(): Promise<Blob> {
    return new Blob([await this._consume()], { type: this.headers.get("content-type") ?? "" });
  }
  async formData(): Promise<never> {
    throw new TypeError(
      "formData() is not supported in the isolate runtime; parse the body with URLSearchParams or JSON.",
    );
  }

  /** @internal A copy of the body for clone(): tees a stream. */
  _cloneBodyInto(target: Body): void {
    if (this.bodyUsed) throw new TypeError("Cannot clone: the body has already been consumed.");
    if (this._stream) {
      const [a, b] = this._stream.tee();
      this._stream = a;
      target._stream = b;
    } else target._bytes = this._bytes;
  }
}

export interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: unknown;
  redirect?: "follow" | "error" | "manual";
  signal?: AbortSignal | null;
  duplex?: "half";
  cache?: string;
  credentials?: string;
  integrity?: string;
  keepalive?: boolean;
  mode?: string;
  referrer?: string;
  referrerPolicy?: string;
}

const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);
const NORMALISED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);

/** The Fetch Standard's Request. */
export class Request extends Body {
  readonly url: string;
  readonly method: string;
  readonly redirect: "follow" | "error" | "manual";
  readonly signal: AbortSignal;
  readonly cache = "default";
  readonly credentials = "same-origin";
  readonly mode = "cors";
  readonly integrity = "";
  readonly keepalive = false;
  readonly destination = "";
  readonly referrer = "about:client";
  readonly referrerPolicy = "";

  constructor(input: string | URL | Request, init: RequestInit = {}) {
    const src = input instanceof Request ? input : undefined;
    super(new Headers(init.headers ?? src?.headers));
    const url = src ? src.url : new URL(String(input)).href;
    if (!src && /^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(url)) {
      throw new TypeError(`Request cannot be constructed from a URL that includes credentials: ${url}`);
    }
    this.url = url;
    let method = init.method ?? src?.method ?? "GET";
    const upper = String(method).toUpperCase();
    if (FORBIDDEN_METHODS.has(upper)) throw new TypeError(`'${method}' HTTP method is unsupported.`);
    if (NORMALISED.has(upper)) method = upper;
    this.method = method;
    this.redirect = init.redirect ?? src?.redirect ?? "follow";
    const controller = init.signal ?? src?.signal;
    this.signal = controller ?? neverAborted();
    if (init.body !== undefined && init.body !== null) {
      if (method === "GET" || method === "HEAD")
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      this._setBody(init.body);
    } else if (src) src._cloneBodyInto(this);
  }

  clone(): Request {
    const r = new Request(this.url, {
      method: this.method,
      headers: this.headers,
      redirect: this.redirect,
      signal: this.signal,
    });
    this._cloneBodyInto(r);
    return r;
  }
}

let noneSignal: AbortSignal | undefined;
/** A signal that never aborts (shared: nobody holds its controller). */
function neverAborted(): AbortSignal {
  noneSignal ??= new AbortController().signal;
  return noneSignal;
}

export interface ResponseInit {
  status?: number;
  statusText?: string;
  headers?: HeadersInit;
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** The Fetch Standard's Response. */
export class Response extends Body {
  readonly status: number;
  readonly statusText: string;
  type: "default" | "basic" | "cors" | "error" | "opaque" | "opaqueredirect" = "default";
  url = "";
  redirected = false;

  constructor(body?: unknown, init: ResponseInit = {}) {
    super(new Headers(init.headers));
    const status = init.status ?? 200;
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(
        `Failed to construct 'Response': The status provided (${status}) is outside the range [200, 599].`,
      );
    }
    this.status = status;
    this.statusText = init.statusText ?? "";
    if (body !== undefined && body !== null) {
      if (NULL_BODY.has(status))
        throw new TypeError(`Response with null body status ${status} cannot have body.`);
      this._setBody(body);
    }
  }
  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  static json(data: unknown, init: ResponseInit = {}): Response {
    const text = JSON.stringify(data);
    if (text === undefined) throw new TypeError("Response.json: the value is not JSON-serialisable.");
    const r = new Response(text, init);
    r.headers.set("content-type", "application/json");
    return r;
  }
  static redirect(url: string | URL, status = 302): Response {
    if (![301, 302, 303, 307, 308].includes(status))
      throw new RangeError(`Invalid redirect status ${status}.`);
    const r = new Response(null, { status, headers: { location: new URL(String(url)).href } });
    return r;
  }
  static error(): Response {
    const r = Object.create(Response.prototype) as Response;
    Object.assign(r, { status: 0, statusText: "", type: "error", headers: new Headers(), _used: false });
    return r;
  }
  clone(): Response {
    const r = new Response(null, { status: this.status, statusText: this.statusText, headers: this.headers });
    r.type = this.type;
    r.url = this.url;
    r.redirected = this.redirected;
    this._cloneBodyInto(r);
    return r;
  }
}

/** Builds a Response with any status (fetch() results may be 1xx-5xx, incl. null-body ones). */
export function makeResponse(
  status: number,
  statusText: string,
  headers: [string, string][],
  body: unknown,
  url: string,
  redirected: boolean,
): Response {
  const r = new Response(null, { status: 200, headers });
  Object.defineProperty(r, "status", { value: status });
  Object.defineProperty(r, "statusText", { value: statusText });
  r.url = url;
  r.redirected = redirected;
  if (body !== undefined && body !== null) r._setBody(body);
  r.headers._guard = "immutable";
  return r;
}

export { toU8 };
