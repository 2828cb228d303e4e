/**
 * The host's side of the one synchronous Web-API bridge call (`web(op, a, b, c)`) an isolate
 * makes: URL parsing and setters by Node's own WHATWG URL parser (ada, which passes the whole
 * of the WPT URL data), and text decoding of the legacy encodings by Node's TextDecoder (ICU).
 * Everything here is a pure function of its arguments; the arguments come from an untrusted
 * isolate, so each is type-checked and bounded, and a bad one answers `null`.
 *
 * Imports nothing from the platform (it is bundled into the isolate host).
 */

/** The longest string an isolate may hand to the bridge (a URL, a base, a setter value). */
export const MAX_WEB_STRING = 1 << 21;
/** The most bytes one legacy-encoding decode may hand to the bridge. */
export const MAX_WEB_BYTES = 1 << 24;

/** Operation numbers (mirrored in src/runtime/isolate/prelude/web-bridge.ts). */
export const WEB_OP = {
  /** (input, base | undefined) → URL parts | null */
  URL_PARSE: 1,
  /** (href, attribute, value) → URL parts after the setter | null */
  URL_SET: 2,
  /** (label) → canonical encoding name | null */
  ENC_NAME: 3,
  /** (name) → the 128 characters of bytes 0x80–0xFF of a single-byte encoding | null */
  ENC_TABLE: 4,
  /** (name, bytes, fatal) → decoded text | null (fatal and malformed) */
  ENC_DECODE: 5,
  /** () → the source of fflate as a script defining `__nimbus_fflate` (compression streams) */
  LIB_FFLATE: 6,
} as const;

/** fflate's source, put in by the host's build (see src/executors/isolate/prelude.ts). */
declare const __NIMBUS_FFLATE__: string | undefined;

const SETTERS = new Set([
  "protocol",
  "username",
  "password",
  "host",
  "hostname",
  "port",
  "pathname",
  "search",
  "hash",
]);

const str = (v: unknown): v is string => typeof v === "string" && v.length <= MAX_WEB_STRING;

/** A parsed URL as the isolate keeps it: href, protocol, username, password, host, hostname, port, pathname, search, hash, origin. */
function parts(u: URL): string[] {
  return [
    u.href,
    u.protocol,
    u.username,
    u.password,
    u.host,
    u.hostname,
    u.port,
    u.pathname,
    u.search,
    u.hash,
    u.origin,
  ];
}

/** Single-byte encodings of the Encoding Standard (their decoders are tables). */
const SINGLE_BYTE = new Set([
  "ibm866",
  "iso-8859-2",
  "iso-8859-3",
  "iso-8859-4",
  "iso-8859-5",
  "iso-8859-6",
  "iso-8859-7",
  "iso-8859-8",
  "iso-8859-8-i",
  "iso-8859-10",
  "iso-8859-13",
  "iso-8859-14",
  "iso-8859-15",
  "iso-8859-16",
  "koi8-r",
  "koi8-u",
  "macintosh",
  "windows-874",
  "windows-1250",
  "windows-1251",
  "windows-1252",
  "windows-1253",
  "windows-1254",
  "windows-1255",
  "windows-1256",
  "windows-1257",
  "windows-1258",
  "x-mac-cyrillic",
]);
const tables = new Map<string, string>();

/** Runs one bridge operation. Never throws: a rejected argument answers null. */
export function webOp(op: number, a: unknown, b: unknown, c: unknown): unknown {
  try {
    switch (op) {
      case WEB_OP.URL_PARSE: {
        if (!str(a) || (b !== undefined && !str(b))) return null;
        const u = URL.parse(a, b);
        return u ? parts(u) : null;
      }
      case WEB_OP.URL_SET: {
        if (!str(a) || typeof b !== "string" || !SETTERS.has(b) || !str(c)) return null;
        const u = URL.parse(a);
        if (!u) return null;
        (u as unknown as Record<string, string>)[b] = c;
        return parts(u);
      }
      case WEB_OP.ENC_NAME: {
        if (!str(a) || a.length > 64) return null;
        return new TextDecoder(a).encoding;
      }
      case WEB_OP.ENC_TABLE: {
        if (typeof a !== "string" || !SINGLE_BYTE.has(a)) return null;
        let t = tables.get(a);
        if (t === undefined) {
          const d = new TextDecoder(a);
          t = "";
          for (let i = 0x80; i < 0x100; i++) t += d.decode(new Uint8Array([i]));
          tables.set(a, t);
        }
        return t;
      }
      case WEB_OP.ENC_DECODE: {
        if (typeof a !== "string" || a.length > 64 || !(b instanceof Uint8Array) || b.length > MAX_WEB_BYTES)
          return null;
        return new TextDecoder(a, { fatal: c === true, ignoreBOM: true }).decode(b);
      }
      case WEB_OP.LIB_FFLATE:
        return typeof __NIMBUS_FFLATE__ === "string" ? __NIMBUS_FFLATE__ : null;
      default:
        return null;
    }
  } catch {
    return null;
  }
}
