/**
 * TextEncoder / TextDecoder (Encoding Standard), atob / btoa. Plain JS, except the legacy
 * encodings' tables and decoders, which come from the host through the Web-API bridge.
 */
import { WEB_OP, web } from "./web-bridge.ts";

/** Encodes a string as UTF-8 (lone surrogates become U+FFFD, as the standard says). */
export function utf8Encode(s: string): Uint8Array {
  const n = s.length;
  // Worst case 3 bytes per UTF-16 unit; trimmed below.
  const out = new Uint8Array(n * 3);
  let o = 0;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[o++] = c;
      continue;
    }
    if (c < 0x800) {
      out[o++] = 0xc0 | (c >> 6);
      out[o++] = 0x80 | (c & 63);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        out[o++] = 0xf0 | (c >> 18);
        out[o++] = 0x80 | ((c >> 12) & 63);
        out[o++] = 0x80 | ((c >> 6) & 63);
        out[o++] = 0x80 | (c & 63);
        continue;
      }
      c = 0xfffd;
    }
    out[o++] = 0xe0 | (c >> 12);
    out[o++] = 0x80 | ((c >> 6) & 63);
    out[o++] = 0x80 | (c & 63);
  }
  return out.slice(0, o);
}

/** Bytes at the end of `b` that start a sequence still missing bytes (streaming decode). */
function incompleteTail(b: Uint8Array): number {
  for (let k = 1; k <= 3 && k <= b.length; k++) {
    const c = b[b.length - k]!;
    if ((c & 0xc0) === 0x80) continue;
    const need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 1;
    return need > k ? k : 0;
  }
  return 0;
}

/** Decodes UTF-8; invalid sequences become U+FFFD unless `fatal` (then TypeError). */
export function utf8Decode(b: Uint8Array, fatal = false): string {
  const parts: string[] = [];
  const units: number[] = [];
  const n = b.length;
  let i = 0;
  const bad = (): void => {
    if (fatal) throw new TypeError("The encoded data was not valid UTF-8.");
    units.push(0xfffd);
  };
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      units.push(c);
      i++;
    } else {
      let need: number;
      let cp: number;
      let lower = 0x80;
      let upper = 0xbf;
      if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        cp = c & 0x1f;
      } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        cp = c & 0xf;
        if (c === 0xe0) lower = 0xa0;
        if (c === 0xed) upper = 0x9f;
      } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        cp = c & 0x7;
        if (c === 0xf0) lower = 0x90;
        if (c === 0xf4) upper = 0x8f;
      } else {
        bad();
        i++;
        continue;
      }
      let j = 1;
      for (; j <= need; j++) {
        const d = i + j < n ? b[i + j]! : -1;
        if (d < (j === 1 ? lower : 0x80) || d > (j === 1 ? upper : 0xbf)) break;
        cp = (cp << 6) | (d & 0x3f);
      }
      if (j <= need) {
        bad();
        i += j;
        continue;
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else units.push(cp);
      i += need + 1;
    }
    if (units.length >= 8192) {
      parts.push(String.fromCharCode.apply(null, units));
      units.length = 0;
    }
  }
  if (units.length) parts.push(String.fromCharCode.apply(null, units));
  return parts.length === 1 ? parts[0]! : parts.join("");
}

function toBytes(input: unknown): Uint8Array {
  if (input === undefined) return new Uint8Array(0);
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new TypeError("The input must be an ArrayBuffer or an ArrayBufferView.");
}

/** The Encoding Standard's TextEncoder (always UTF-8). */
export class TextEncoder {
  get encoding(): string {
    return "utf-8";
  }
  encode(input = ""): Uint8Array {
    return utf8Encode(String(input));
  }
  encodeInto(input: string, dest: Uint8Array): { read: number; written: number } {
    const bytes = utf8Encode(String(input));
    // Only whole characters are written.
    let written = Math.min(bytes.length, dest.length);
    while (written > 0 && written < bytes.length && (bytes[written]! & 0xc0) === 0x80) written--;
    dest.set(bytes.subarray(0, written));
    const read = utf8Decode(bytes.subarray(0, written)).length;
    return { read, written };
  }
}

const UTF8_LABELS = new Set([
  "utf-8",
  "utf8",
  "unicode-1-1-utf-8",
  "unicode11utf8",
  "unicode20utf8",
  "x-unicode20utf8",
]);
const tables = new Map<string, string>();

/** The decode table (bytes 0x80–0xFF) of a single-byte encoding, from the host once per isolate. */
function singleByteTable(name: string): string | undefined {
  if (name === "x-user-defined") {
    let t = "";
    for (let i = 0x80; i < 0x100; i++) t += String.fromCharCode(0xf700 + i);
    return t;
  }
  let t = tables.get(name);
  if (t === undefined) {
    const got = web(WEB_OP.ENC_TABLE, name);
    if (typeof got !== "string") return undefined;
    t = got;
    tables.set(name, t);
  }
  return t;
}

/** UTF-16 decoder state across `stream: true` calls. */
interface Utf16State {
  lead: number;
  surrogate: number;
}

function utf16Decode(b: Uint8Array, be: boolean, st: Utf16State, flush: boolean, fatal: boolean): string {
  const units: number[] = [];
  const bad = () => {
    if (fatal) throw new TypeError("The encoded data is not valid UTF-16.");
    units.push(0xfffd);
  };
  for (let i = 0; i < b.length; i++) {
    if (st.lead < 0) {
      st.lead = b[i]!;
      continue;
    }
    const cu = be ? (st.lead << 8) | b[i]! : (b[i]! << 8) | st.lead;
    st.lead = -1;
    if (st.surrogate >= 0) {
      const hi = st.surrogate;
      st.surrogate = -1;
      if (cu >= 0xdc00 && cu <= 0xdfff) {
        units.push(hi, cu);
        continue;
      }
      bad();
    }
    if (cu >= 0xd800 && cu <= 0xdbff) st.surrogate = cu;
    else if (cu >= 0xdc00 && cu <= 0xdfff) bad();
    else units.push(cu);
  }
  if (flush && (st.lead >= 0 || st.surrogate >= 0)) {
    st.lead = -1;
    st.surrogate = -1;
    bad();
  }
  let out = "";
  for (let i = 0; i < units.length; i += 8192)
    out += String.fromCharCode.apply(null, units.slice(i, i + 8192));
  return out;
}

/**
 * The Encoding Standard's TextDecoder: UTF-8 and UTF-16LE/BE in JS; the single-byte legacy
 * encodings from a table the host gives once; the multi-byte legacy encodings (gbk, big5,
 * shift_jis, euc-kr …) decoded by the host (with `stream: true` their bytes are held until the
 * call that ends the stream).
 */
export class TextDecoder {
  #encoding: string;
  #fatal: boolean;
  #ignoreBOM: boolean;
  #pending: Uint8Array | undefined;
  #bomSeen = false;
  #utf16: Utf16State = { lead: -1, surrogate: -1 };

  constructor(label: unknown = "utf-8", options: { fatal?: boolean; ignoreBOM?: boolean } | null = {}) {
    const l = String(label).trim().toLowerCase();
    let name = UTF8_LABELS.has(l) ? "utf-8" : (web(WEB_OP.ENC_NAME, l) as string | null);
    if (name === "utf-16") name = "utf-16le";
    if (!name || name === "replacement")
      throw new RangeError(`The encoding label '${String(label)}' is not supported.`);
    this.#encoding = name;
    this.#fatal = Boolean(options?.fatal);
    this.#ignoreBOM = Boolean(options?.ignoreBOM);
  }
  get encoding(): string {
    return this.#encoding;
  }
  get fatal(): boolean {
    return this.#fatal;
  }
  get ignoreBOM(): boolean {
    return this.#ignoreBOM;
  }
  get [Symbol.toStringTag](): string {
    return "TextDecoder";
  }
  decode(input?: unknown, options: { stream?: boolean } | null = {}): string {
    let bytes = toBytes(input);
    const stream = Boolean(options?.stream);
    const enc = this.#encoding;
    let out: string;
    if (enc === "utf-16le" || enc === "utf-16be") {
      out = utf16Decode(bytes, enc === "utf-16be", this.#utf16, !stream, this.#fatal);
    } else {
      if (this.#pending) {
        const joined = new Uint8Array(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = undefined;
      }
      if (enc === "utf-8") {
        const rest = stream ? incompleteTail(bytes) : 0;
        if (rest > 0) this.#pending = bytes.slice(bytes.length - rest);
        out = utf8Decode(rest > 0 ? bytes.subarray(0, bytes.length - rest) : bytes, this.#fatal);
      } else {
        const table = singleByteTable(enc);
        if (table !== undefined) {
          out = "";
          for (let i = 0; i < bytes.length; i++) {
            const c = bytes[i]!;
            const ch = c < 0x80 ? String.fromCharCode(c) : table[c - 0x80]!;
            if (ch === "\uFFFD" && this.#fatal) throw new TypeError(`The encoded data is not valid ${enc}.`);
            out += ch;
          }
        } else if (stream) {
          this.#pending = bytes.slice();
          return "";
        } else {
          const got = web(WEB_OP.ENC_DECODE, enc, bytes, this.#fatal);
          if (typeof got !== "string") throw new TypeError(`The encoded data is not valid ${enc}.`);
          return got;
        }
      }
    }
    if (enc === "utf-8" || enc === "utf-16le" || enc === "utf-16be") {
      if (!this.#bomSeen && out.length > 0) {
        this.#bomSeen = true;
        if (!this.#ignoreBOM && out.charCodeAt(0) === 0xfeff) out = out.slice(1);
      }
      if (!stream) this.#bomSeen = false;
    }
    return out;
  }
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Encodes a binary string (code units ≤ 0xFF) as base64. */
export function btoa(data: unknown): string {
  const s = String(data);
  let out = "";
  for (let i = 0; i < s.length; i += 3) {
    const a = s.charCodeAt(i);
    const b = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
    const c = i + 2 < s.length ? s.charCodeAt(i + 2) : 0;
    if (a > 255 || b > 255 || c > 255) {
      throw new DOMExceptionLike("Invalid character", "InvalidCharacterError");
    }
    const n = (a << 16) | (b << 8) | c;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]!;
    out += i + 1 < s.length ? B64[(n >> 6) & 63]! : "=";
    out += i + 2 < s.length ? B64[n & 63]! : "=";
  }
  return out;
}

/** Decodes base64 to a binary string (forgiving-base64 as the HTML standard says). */
export function atob(data: unknown): string {
  let s = String(data).replace(/[\t\n\f\r ]/g, "");
  if (s.length % 4 === 0) s = s.replace(/={1,2}$/, "");
  if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) {
    throw new DOMExceptionLike("The string to be decoded is not correctly encoded.", "InvalidCharacterError");
  }
  let out = "";
  let bits = 0;
  let value = 0;
  for (let i = 0; i < s.length; i++) {
    value = (value << 6) | B64.indexOf(s[i]!);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += String.fromCharCode((value >> bits) & 0xff);
    }
  }
  return out;
}

/** The legacy `code` of the DOMException names that have one (WebIDL). */
const LEGACY_CODES: Record<string, number> = {
  IndexSizeError: 1,
  HierarchyRequestError: 3,
  WrongDocumentError: 4,
  InvalidCharacterError: 5,
  NoModificationAllowedError: 7,
  NotFoundError: 8,
  NotSupportedError: 9,
  InvalidStateError: 11,
  SyntaxError: 12,
  InvalidModificationError: 13,
  NamespaceError: 14,
  InvalidAccessError: 15,
  TypeMismatchError: 17,
  SecurityError: 18,
  NetworkError: 19,
  AbortError: 20,
  URLMismatchError: 21,
  QuotaExceededError: 22,
  TimeoutError: 23,
  InvalidNodeTypeError: 24,
  DataCloneError: 25,
};

/** A DOMException stand-in (installed as the global `DOMException`). */
export class DOMExceptionLike extends Error {
  readonly code: number;
  constructor(message = "", name = "Error") {
    super(message);
    Object.defineProperty(this, "name", { value: name, configurable: true, writable: true });
    this.code = LEGACY_CODES[name] ?? 0;
  }
}
