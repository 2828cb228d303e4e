/**
 * CompressionStream and DecompressionStream (Compression Standard): gzip, deflate (zlib
 * wrapper) and deflate-raw, by fflate's streaming (de)compressors inside the isolate.
 */
import { Deflate, Gunzip, Gzip, Inflate, Unzlib, Zlib } from "fflate";
import { TransformStream } from "web-streams-polyfill";

/** The formats of the Compression Standard. */
export type CompressionFormat = "gzip" | "deflate" | "deflate-raw";

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
    const codec = fmt === "gzip" ? new Gzip() : fmt === "deflate" ? new Zlib() : new Deflate();
    super(codecStream(codec as unknown as Codec, false) as Transformer<BufferSource, Uint8Array>);
  }
}

/** Decompresses a stream of bytes; corrupt or truncated input errors the stream with a TypeError. */
export class DecompressionStream extends TransformStream<BufferSource, Uint8Array> {
  constructor(f: CompressionFormat) {
    const fmt = format(f, "DecompressionStream");
    const codec = fmt === "gzip" ? new Gunzip() : fmt === "deflate" ? new Unzlib() : new Inflate();
    super(codecStream(codec as unknown as Codec, true) as Transformer<BufferSource, Uint8Array>);
  }
}
