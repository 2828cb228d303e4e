/**
 * Request and Response for the isolate runtime (the Fetch Standard's shapes).
 * A body made from bytes or text is kept as bytes, and becomes a ReadableStream only when
 * someone asks for `.body` — so the runtime can send a plain response in one piece and
 * stream only what really is a stream.
 */
import { ReadableStream } from "web-streams-polyfill";
import { Blob, bytesStream, File } from "./blob.ts";
import { utf8Decode, utf8Encode } from "./encoding.ts";
import { AbortController, type AbortSignal } from "./events.ts";
import { encodeMultipart, FormData, parseFormBody } from "./form-data.ts";
import { Headers, type HeadersInit } from "./headers.ts";
import { toByteString } from "./iter.ts";
import { URL, URLSearchParams } from "./url.ts";

export { Blob, File, FormData, Headers, type HeadersInit };

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
  if (init instanceof FormData) return encodeMultipart(init);
  if (init instanceof ReadableStream || typeof (init as { getReader?: unknown }).getReader === "function") {
    const stream = init as ReadableStream<Uint8Array>;
    if (stream.locked || (stream as unknown as { _disturbed?: boolean })._disturbed) {
      throw new TypeError("The body stream is locked or has been read already.");
    }
    return { stream };
  }
  if (
    typeof init === "object" &&
    typeof (init as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function"
  ) {
    return { stream: ReadableStream.from(init as AsyncIterable<Uint8Array>) as ReadableStream<Uint8Array> };
  }
  return { bytes: utf8Encode(String(init)), type: "text/plain;charset=UTF-8" };
}

/** A body stream's chunk as bytes: the Fetch Standard takes Uint8Array chunks only. */
function toU8(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  throw new TypeError(
    `A body stream chunk must be a Uint8Array (got ${chunk === null ? "null" : typeof chunk === "object" ? Object.prototype.toString.call(chunk) : typeof chunk}); encode text with TextEncoder.`,
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
  /** @internal */ _h: Headers | undefined;
  /** @internal Pairs the platform checked already, made into Headers when first read. */
  _hPairs: [string, string][] | undefined;

  constructor(headers: Headers | undefined, pairs?: [string, string][]) {
    this._h = headers;
    this._hPairs = pairs;
  }

  get headers(): Headers {
    if (this._h === undefined) {
      this._h = new Headers(this._hPairs);
      this._hPairs = undefined;
    }
    return this._h;
  }
  /** @internal (Response.error() swaps in immutable headers). */
  set headers(h: Headers) {
    this._h = h;
    this._hPairs = undefined;
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
    if (this._stream?.locked) throw new TypeError("The body stream is locked by a reader.");
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
  async formData(): Promise<FormData> {
    return parseFormBody(await this._consume(), this.headers.get("content-type"));
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
const NORMALISED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MODES = new Set(["same-origin", "no-cors", "cors"]);
const REDIRECTS = new Set(["follow", "error", "manual"]);

/** Set by {@link invocationRequest} for the one construction it makes. */
let platformMade: { url: string; headers: [string, string][]; body: Uint8Array | undefined } | undefined;

/**
 * The invocation's Request, made from what the platform already parsed and checked: its URL
 * is normalised and its Headers built only when the function reads them (most handlers
 * never do), and its body bytes are taken as they are (they were copied into the isolate).
 */
export function invocationRequest(
  url: string,
  method: string,
  headers: [string, string][],
  body: Uint8Array | undefined,
): Request {
  platformMade = { url, headers, body };
  try {
    return new Request(url, { method });
  } finally {
    platformMade = undefined;
  }
}

/** The Fetch Standard's Request. */
export class Request extends Body {
  /** @internal The normalised URL, once known. */
  _url: string | undefined;
  /** @internal The platform's URL, normalised when first read. */
  _rawUrl: string | undefined;
  readonly method: string;
  readonly redirect: "follow" | "error" | "manual";
  readonly signal: AbortSignal;
  readonly mode: string;
  readonly cache = "default";
  readonly credentials = "same-origin";
  readonly integrity = "";
  readonly keepalive = false;
  readonly destination = "";
  readonly referrer = "about:client";
  readonly referrerPolicy = "";

  constructor(input: string | URL | Request, init: RequestInit = {}) {
    const made = platformMade;
    platformMade = undefined;
    const src = input instanceof Request ? input : undefined;
    init ??= {};
    super(made ? undefined : new Headers(init.headers ?? src?.headers), made?.headers);
    if (made) this._rawUrl = made.url;
    else {
      const url = src ? src.url : new URL(String(input)).href;
      if (!src && /^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(url)) {
        throw new TypeError(`Request cannot be constructed from a URL that includes credentials: ${url}`);
      }
      this._url = url;
    }
    let method = init.method === undefined ? (src?.method ?? "GET") : toByteString(init.method, "A method");
    if (!METHOD.test(method)) throw new TypeError(`'${method}' is not a valid HTTP method.`);
    const upper = method.toUpperCase();
    if (FORBIDDEN_METHODS.has(upper)) throw new TypeError(`'${method}' HTTP method is unsupported.`);
    if (NORMALISED.has(upper)) method = upper;
    this.method = method;
    const mode = init.mode ?? src?.mode ?? "cors";
    if (mode === "navigate") throw new TypeError("A Request's mode cannot be 'navigate'.");
    if (!MODES.has(mode)) throw new TypeError(`'${mode}' is not a valid Request mode.`);
    this.mode = mode;
    const redirect = init.redirect ?? src?.redirect ?? "follow";
    if (!REDIRECTS.has(redirect)) throw new TypeError(`'${redirect}' is not a valid Request redirect mode.`);
    this.redirect = redirect;
    const controller = init.signal ?? src?.signal;
    this.signal = controller ?? neverAborted();
    if (init.body !== undefined && init.body !== null) {
      if (method === "GET" || method === "HEAD")
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      this._setBody(init.body);
      if (this._stream && init.duplex !== "half") {
        throw new TypeError("A Request with a stream body needs duplex: 'half' in its init.");
      }
    } else if (src) src._cloneBodyInto(this);
    else if (made?.body && made.body.byteLength > 0 && method !== "GET" && method !== "HEAD") {
      this._bytes = made.body;
    }
  }

  get url(): string {
    if (this._url === undefined) {
      this._url = new URL(this._rawUrl!).href;
      this._rawUrl = undefined;
    }
    return this._url;
  }

  get [Symbol.toStringTag](): string {
    return "Request";
  }

  clone(): Request {
    const r = new Request(this.url, {
      method: this.method,
      headers: this.headers,
      redirect: this.redirect,
      signal: this.signal,
      mode: this.mode,
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
    init ??= {};
    super(new Headers(init.headers));
    const status = init.status ?? 200;
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(
        `Failed to construct 'Response': The status provided (${status}) is outside the range [200, 599].`,
      );
    }
    this.status = status;
    const statusText = init.statusText === undefined ? "" : toByteString(init.statusText, "A statusText");
    if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(statusText)) {
      throw new TypeError("A statusText must be a reason phrase (no CR, LF or other control characters).");
    }
    this.statusText = statusText;
    if (body !== undefined && body !== null) {
      if (NULL_BODY.has(status))
        throw new TypeError(`Response with null body status ${status} cannot have body.`);
      this._setBody(body);
    }
  }
  get [Symbol.toStringTag](): string {
    return "Response";
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
    const headers = new Headers();
    headers._guard = "immutable";
    Object.assign(r, { status: 0, statusText: "", type: "error", headers, _used: false });
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
