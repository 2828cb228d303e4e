/** TextEncoderStream and TextDecoderStream (Encoding Standard), built on TransformStream. */
import { TransformStream } from "web-streams-polyfill";
import { TextDecoder, utf8Encode } from "./encoding.ts";

/** Encodes string chunks as UTF-8; a surrogate pair split across two chunks stays one character. */
export class TextEncoderStream extends TransformStream<string, Uint8Array> {
  constructor() {
    let pending = "";
    super({
      transform: (chunk, c) => {
        let s = pending + String(chunk);
        pending = "";
        const last = s.charCodeAt(s.length - 1);
        if (last >= 0xd800 && last <= 0xdbff) {
          pending = s.slice(-1);
          s = s.slice(0, -1);
        }
        if (s) c.enqueue(utf8Encode(s));
      },
      flush: (c) => {
        if (pending) c.enqueue(utf8Encode(pending));
      },
    });
  }
  get encoding(): string {
    return "utf-8";
  }
}

/** Decodes byte chunks with a streaming TextDecoder; a chunk that is not a buffer errors the stream. */
export class TextDecoderStream extends TransformStream<Uint8Array, string> {
  #d: TextDecoder;
  constructor(label = "utf-8", options: { fatal?: boolean; ignoreBOM?: boolean } = {}) {
    const d = new TextDecoder(label, options);
    super({
      transform: (chunk, c) => {
        const s = d.decode(chunk, { stream: true });
        if (s) c.enqueue(s);
      },
      flush: (c) => {
        const s = d.decode();
        if (s) c.enqueue(s);
      },
    });
    this.#d = d;
  }
  get encoding(): string {
    return this.#d.encoding;
  }
  get fatal(): boolean {
    return this.#d.fatal;
  }
  get ignoreBOM(): boolean {
    return this.#d.ignoreBOM;
  }
}
