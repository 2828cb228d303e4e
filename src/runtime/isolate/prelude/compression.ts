/**
 * CompressionStream and DecompressionStream (Compression Standard): gzip, deflate (zlib
 * wrapper) and deflate-raw, by fflate's streaming (de)compressors, run inside the isolate
 * (so CPU time and memory stay the function's, under its limits).
 */
import { TransformStream } from "web-streams-polyfill";
import { WEB_OP, web } from "./web-bridge.ts";

type Fflate = typeof import("fflate");
let loaded: Fflate | undefined;
/**
 * fflate, fetched from the host and compiled on an isolate's first (de)compression: in the
 * prelude it would add its code and its Huffman tables (~35 KB of source, ~700 KB of heap
 * and typed arrays) to every isolate's snapshot, whether or not it ever compresses.
 */
function fflate(): Fflate {
  if (!loaded) {
    const src = web(WEB_OP.LIB_FFLATE);
    if (typeof src !== "string")
      throw new TypeError("Compression is not available: the host did not provide it.");
    loaded = new Function(`${src}\nreturn __nimbus_fflate;`)() as Fflate;
  }
  return loaded;
}

interface Codec {
  ondata: (data: Uint8Array, final: boolean) => void;
  push(data: Uint8Array, final?: boolean): void;
}

function chunkBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError("A (de)compression stream chunk must be a BufferSource (an ArrayBuffer or a view).");
}

function format(f: unknown, what: string): CompressionFormat {
  const s = String(f);
  if (s !== "gzip" && s !== "deflate" && s !== "deflate-raw") {
    throw new TypeError(
      `${what}: unsupported format ${JSON.stringify(s)} (use "gzip", "deflate" or "deflate-raw").`,
    );
  }
  return s;
}

function codecStream(codec: Codec, decompress: boolean): Transformer<unknown, Uint8Array> {
  let out: Uint8Array[] = [];
  let ended = false;
  codec.ondata = (data, final) => {
    if (data.length) out.push(data);
    if (final) ended = true;
  };
  const run = (data: Uint8Array, final: boolean, c: TransformStreamDefaultController<Uint8Array>) => {
    if (decompress && ended && data.length)
      throw new TypeError("There is data after the end of the compressed stream.");
    try {
      codec.push(data, final);
    } catch (e) {
      throw new TypeError(`The compressed data is invalid: ${(e as Error).message}`);
    }
    for (const o of out) c.enqueue(o);
    out = [];
    if (final && decompress && !ended) throw new TypeError("The compressed stream ended early.");
  };
  return {
    transform: (chunk, c) => run(chunkBytes(chunk), false, c),
    flush: (c) => run(new Uint8Array(0), true, c),
  };
}

/** Compresses a stream of bytes. */
export class CompressionStream extends TransformStream<BufferSource, Uint8Array> {
  constructor(f: CompressionFormat) {
    const fmt = format(f, "CompressionStream");
    const lib = fflate();
    const codec = fmt === "gzip" ? new lib.Gzip() : fmt === "deflate" ? new lib.Zlib() : new lib.Deflate();
    super(codecStream(codec as unknown as Codec, false) as Transformer<BufferSource, Uint8Array>);
  }
}

/** Decompresses a stream of bytes; corrupt or truncated input errors the stream with a TypeError. */
export class DecompressionStream extends TransformStream<BufferSource, Uint8Array> {
  constructor(f: CompressionFormat) {
    const fmt = format(f, "DecompressionStream");
    const lib = fflate();
    const codec =
      fmt === "gzip" ? new lib.Gunzip() : fmt === "deflate" ? new lib.Unzlib() : new lib.Inflate();
    super(codecStream(codec as unknown as Codec, true) as Transformer<BufferSource, Uint8Array>);
  }
}
