/**
 * FormData (XHR Standard), its multipart/form-data encoding (HTML Standard), and the body
 * parsing behind `request.formData()` / `response.formData()` (Fetch Standard): multipart
 * and application/x-www-form-urlencoded.
 */
import { Blob, File } from "./blob.ts";
import { utf8Decode, utf8Encode } from "./encoding.ts";
import { pairIterator, toUSV } from "./iter.ts";
import { parseUrlencoded } from "./url.ts";

/** A FormData value: a string or a File. */
export type FormDataValue = string | File;

const iterate = pairIterator("FormData");

function entryValue(value: unknown, filename: unknown, argc: number): FormDataValue {
  if (!(value instanceof Blob)) {
    if (argc > 2) throw new TypeError("FormData: a filename can only be given with a Blob value.");
    return toUSV(value);
  }
  if (value instanceof File && argc <= 2) return value;
  const name = argc > 2 ? toUSV(filename) : "blob";
  const f = new File([value], name, {
    type: value.type,
    lastModified: value instanceof File ? value.lastModified : undefined,
  });
  return f;
}

/** The XHR Standard's FormData (no form elements: the constructor takes no form). */
export class FormData {
  #list: [string, FormDataValue][] = [];

  constructor(form?: unknown) {
    if (form !== undefined)
      throw new TypeError("FormData: there are no form elements in the isolate runtime.");
  }
  append(name: string, value: string | Blob, filename?: string): void {
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    if (arguments.length < 2) throw new TypeError("FormData.append: 2 arguments required.");
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    this.#list.push([toUSV(name), entryValue(value, filename, arguments.length)]);
  }
  set(name: string, value: string | Blob, filename?: string): void {
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    if (arguments.length < 2) throw new TypeError("FormData.set: 2 arguments required.");
    const n = toUSV(name);
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    const v = entryValue(value, filename, arguments.length);
    const i = this.#list.findIndex(([k]) => k === n);
    if (i < 0) this.#list.push([n, v]);
    else {
      this.#list[i] = [n, v];
      this.#list = this.#list.filter(([k], j) => j <= i || k !== n);
    }
  }
  delete(name: string): void {
    const n = toUSV(name);
    this.#list = this.#list.filter(([k]) => k !== n);
  }
  get(name: string): FormDataValue | null {
    const n = toUSV(name);
    for (const [k, v] of this.#list) if (k === n) return v;
    return null;
  }
  getAll(name: string): FormDataValue[] {
    const n = toUSV(name);
    return this.#list.filter(([k]) => k === n).map(([, v]) => v);
  }
  has(name: string): boolean {
    const n = toUSV(name);
    return this.#list.some(([k]) => k === n);
  }
  forEach(cb: (value: FormDataValue, name: string, fd: FormData) => void, thisArg?: unknown): void {
    if (typeof cb !== "function") throw new TypeError("FormData.forEach: the callback is not a function.");
    for (let i = 0; i < this.#list.length; i++) {
      const [k, v] = this.#list[i]!;
      cb.call(thisArg, v, k, this);
    }
  }
  entries(): IterableIterator<[string, FormDataValue]> {
    return iterate(() => this.#list, 2);
  }
  keys(): IterableIterator<string> {
    return iterate(() => this.#list, 0);
  }
  values(): IterableIterator<FormDataValue> {
    return iterate(() => this.#list, 1);
  }
  [Symbol.iterator](): IterableIterator<[string, FormDataValue]> {
    return this.entries();
  }
  get [Symbol.toStringTag](): string {
    return "FormData";
  }
}

const escapeName = (s: string) => s.replace(/\n/g, "%0A").replace(/\r/g, "%0D").replace(/"/g, "%22");
const crlf = (s: string) => s.replace(/\r\n|\r|\n/g, "\r\n");

/** Encodes a FormData as multipart/form-data: the bytes and the content type with its boundary. */
export function encodeMultipart(fd: FormData): { bytes: Uint8Array; type: string } {
  // The boundary only has to be unlikely in the content; it protects nothing.
  let boundary = "----NimbusFormBoundary";
  for (let i = 0; i < 16; i++) boundary += Math.floor(Math.random() * 36).toString(36);
  const parts: Uint8Array[] = [];
  for (const [name, value] of fd) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(crlf(name))}"`;
    if (typeof value === "string") {
      parts.push(utf8Encode(`${head}\r\n\r\n${crlf(value)}\r\n`));
      continue;
    }
    head += `; filename="${escapeName(value.name)}"\r\nContent-Type: ${value.type || "application/octet-stream"}\r\n\r\n`;
    parts.push(utf8Encode(head), value._bytes, utf8Encode("\r\n"));
  }
  parts.push(utf8Encode(`--${boundary}--\r\n`));
  const size = parts.reduce((n, p) => n + p.byteLength, 0);
  const bytes = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    bytes.set(p, o);
    o += p.byteLength;
  }
  return { bytes, type: `multipart/form-data; boundary=${boundary}` };
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0]!;
  outer: for (
    let i = hay.indexOf(first, from);
    i >= 0 && i <= hay.length - needle.length;
    i = hay.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function param(header: string, key: string): string | undefined {
  const re = new RegExp(`;\\s*${key}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s]*))`, "i");
  const m = re.exec(header);
  if (!m) return undefined;
  return m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2];
}

const bad = (why: string) => new TypeError(`The body is not valid multipart/form-data: ${why}.`);

/** Parses a multipart/form-data body with this boundary. */
export function parseMultipart(body: Uint8Array, boundary: string): FormData {
  const fd = new FormData();
  const delim = utf8Encode(`--${boundary}`);
  const next = utf8Encode(`\r\n--${boundary}`);
  let pos = indexOf(body, delim, 0);
  if (pos < 0) throw bad("no boundary found");
  pos += delim.length;
  for (;;) {
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return fd;
    if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw bad("a boundary is not followed by CRLF");
    pos += 2;
    const headEnd = indexOf(body, utf8Encode("\r\n\r\n"), pos);
    if (headEnd < 0) throw bad("a part has no end of headers");
    const headers = utf8Decode(body.subarray(pos, headEnd)).split("\r\n");
    let disposition = "";
    let type = "";
    for (const h of headers) {
      const colon = h.indexOf(":");
      if (colon < 0) continue;
      const k = h.slice(0, colon).trim().toLowerCase();
      const v = h.slice(colon + 1).trim();
      if (k === "content-disposition") disposition = v;
      else if (k === "content-type") type = v;
    }
    if (!/^form-data\s*(;|$)/i.test(disposition)) throw bad("a part has no Content-Disposition: form-data");
    const name = param(disposition, "name");
    if (name === undefined) throw bad("a part has no name");
    const filename = param(disposition, "filename");
    const start = headEnd + 4;
    const end = indexOf(body, next, start);
    if (end < 0) throw bad("a part is not closed by a boundary");
    const content = body.subarray(start, end);
    if (filename !== undefined)
      fd.append(name, new File([content.slice()], filename, { type: type || "text/plain" }));
    else fd.append(name, utf8Decode(content));
    pos = end + next.length;
  }
}

/** Parses a body as the Fetch Standard's formData() does, by its Content-Type. */
export function parseFormBody(body: Uint8Array, contentType: string | null): FormData {
  const essence = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (essence === "multipart/form-data") {
    const boundary = param(contentType!, "boundary");
    if (!boundary) throw new TypeError("The multipart/form-data Content-Type has no boundary.");
    return parseMultipart(body, boundary);
  }
  if (essence === "application/x-www-form-urlencoded") {
    const fd = new FormData();
    for (const [k, v] of parseUrlencoded(utf8Decode(body))) fd.append(k, v);
    return fd;
  }
  throw new TypeError(
    `formData() needs a multipart/form-data or application/x-www-form-urlencoded body, not ${JSON.stringify(contentType)}.`,
  );
}
