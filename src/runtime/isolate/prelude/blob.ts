/** Blob and File (File API) for the isolate runtime: bytes held in memory. */
import { ReadableStream } from "web-streams-polyfill";
import { utf8Decode, utf8Encode } from "./encoding.ts";
import { toUSV } from "./iter.ts";

/** A Blob type: lower-cased, or empty when it has a character outside U+0020–U+007E. */
function normType(t: unknown): string {
  const s = t === undefined ? "" : String(t);
  return /^[\x20-\x7e]*$/.test(s) ? s.toLowerCase() : "";
}

/** A stream of one chunk (none when empty). */
export function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(c) {
      if (bytes.byteLength > 0) c.enqueue(bytes);
      c.close();
    },
  });
}

/** Options of `new Blob`. */
export interface BlobOptions {
  type?: string;
  endings?: "transparent" | "native";
}

/** A Blob (bytes + type). */
export class Blob {
  /** @internal */
  readonly _bytes: Uint8Array;
  #type: string;

  constructor(parts?: unknown, options: BlobOptions | null = {}) {
    if (parts !== undefined && (typeof parts !== "object" || parts === null || !(Symbol.iterator in parts))) {
      throw new TypeError("Blob parts must be a sequence (an array of strings, buffers or Blobs).");
    }
    const endings = options?.endings ?? "transparent";
    if (endings !== "transparent" && endings !== "native") {
      throw new TypeError(`Blob endings must be "transparent" or "native", not ${JSON.stringify(endings)}.`);
    }
    const chunks: Uint8Array[] = [];
    for (const p of (parts ?? []) as Iterable<unknown>) chunks.push(toBytesPart(p, endings === "native"));
    const size = chunks.reduce((n, c) => n + c.byteLength, 0);
    const bytes = new Uint8Array(size);
    let o = 0;
    for (const c of chunks) {
      bytes.set(c, o);
      o += c.byteLength;
    }
    this._bytes = bytes;
    this.#type = normType(options?.type);
  }
  get type(): string {
    return this.#type;
  }
  get size(): number {
    return this._bytes.byteLength;
  }
  slice(start?: number, end?: number, type?: string): Blob {
    const b = new Blob([], { type });
    (b as { _bytes: Uint8Array })._bytes = this._bytes.slice(start, end);
    return b;
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
  get [Symbol.toStringTag](): string {
    return "Blob";
  }
}

/** A File (a named Blob). */
export class File extends Blob {
  #name: string;
  #lastModified: number;
  constructor(parts: unknown, name: string, options: (BlobOptions & { lastModified?: number }) | null = {}) {
    // biome-ignore lint/complexity/noArguments: WebIDL: how many arguments were passed is observable
    if (arguments.length < 2) throw new TypeError("File: 2 arguments required (parts, name).");
    super(parts, options);
    this.#name = toUSV(name);
    this.#lastModified = options?.lastModified === undefined ? Date.now() : Number(options.lastModified);
  }
  get name(): string {
    return this.#name;
  }
  get lastModified(): number {
    return this.#lastModified;
  }
  override get [Symbol.toStringTag](): string {
    return "File";
  }
}

function toBytesPart(p: unknown, native: boolean): Uint8Array {
  if (p instanceof Blob) return p._bytes;
  if (p instanceof ArrayBuffer) return new Uint8Array(p.slice(0));
  if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength));
  const s = toUSV(p);
  return utf8Encode(native ? s.replace(/\r\n|\r/g, "\n") : s);
}
