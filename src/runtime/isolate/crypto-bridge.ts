/**
 * Web Crypto for isolates, done by the host's own `crypto.subtle` (Node's webcrypto, i.e.
 * OpenSSL). Keys never leave the host as objects: each isolate has a {@link KeyTable} of the
 * host CryptoKeys it created, and its in-isolate CryptoKey only carries the table index
 * (its "handle") and the key's public description. Everything that crosses from the isolate
 * is checked here before Node's webcrypto sees it: only plain values of the expected types
 * and sizes go through, handles must name a key of the same isolate, and the expensive
 * parameters (RSA modulus, PBKDF2 iterations) are bounded, as Workers bounds them.
 *
 * Imports nothing from the platform (runs inside the isolate host).
 */
import { createHash, webcrypto } from "node:crypto";

type HostKey = webcrypto.CryptoKey;
/** Node's CryptoKey class (a global since Node 17). */
const HostCryptoKey = (globalThis as unknown as { CryptoKey: abstract new () => object }).CryptoKey;

/** The public description of a key, as the isolate's CryptoKey shows it. */
export interface KeyInfo {
  /** Index in the isolate's key table. */
  h: number;
  type: string;
  extractable: boolean;
  algorithm: Record<string, unknown>;
  usages: string[];
}

/** What a call returns to the isolate: never a host object, never a thrown host error. */
export type SubtleResult = { ok: true; value: unknown } | { ok: false; name: string; message: string };

/** Bounds of the bridge (one isolate). */
export interface CryptoLimits {
  /** Keys one isolate may hold at once (released when the isolate's CryptoKey is collected). @default 10000 */
  maxKeys: number;
  /** Operations of one isolate in flight at once (they run on the host's thread pool). @default 64 */
  maxInFlight: number;
  /** Bytes of one data argument. @default 32 MiB */
  maxData: number;
}

/** The defaults of {@link CryptoLimits}. */
export const CRYPTO_LIMITS: CryptoLimits = { maxKeys: 10_000, maxInFlight: 64, maxData: 32 << 20 };

/** Largest RSA modulus a function may generate (larger ones hold a host thread for seconds). */
const MAX_MODULUS = 4096;
/** Workers' limit on PBKDF2 iterations, for the same reason. */
const MAX_ITERATIONS = 100_000;

/** A DOMException-named failure raised by the bridge's own checks. */
class BridgeError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

/** One isolate's keys. Cleared when the isolate is disposed. */
export class KeyTable {
  readonly #keys = new Map<number, HostKey>();
  /** Imported keys by what was imported, so re-importing the same key reuses its entry. */
  readonly #imported = new Map<string, number>();
  /** How many in-isolate CryptoKeys share each entry (an import reused), and each entry's import id. */
  readonly #refs = new Map<number, { n: number; id?: string }>();
  #next = 1;
  /** Operations in flight now. */
  inFlight = 0;
  readonly limits: CryptoLimits;

  /** @param limits bounds for this isolate. @default {@link CRYPTO_LIMITS} */
  constructor(limits: CryptoLimits = CRYPTO_LIMITS) {
    this.limits = limits;
  }

  /** Keys held now. */
  get size(): number {
    return this.#keys.size;
  }

  /**
   * The entry of a key imported before from the same arguments (one more CryptoKey shares it),
   * if any. Libraries such as jose import the same secret on every request; without this
   * each request would take a table entry until the isolate's next major GC.
   */
  reuse(id: string): KeyInfo | undefined {
    const h = this.#imported.get(id);
    const key = h === undefined ? undefined : this.#keys.get(h);
    if (h === undefined || !key) return undefined;
    this.#refs.get(h)!.n++;
    return describe(h, key);
  }

  /** Stores a key and returns its public description; `id` names an import for {@link reuse}. */
  add(key: HostKey, id?: string): KeyInfo {
    if (this.#keys.size >= this.limits.maxKeys) {
      throw new BridgeError(
        "QuotaExceededError",
        `NIMBUS_CRYPTO_KEY_LIMIT: the function holds ${this.limits.maxKeys} CryptoKeys, the most one instance may; reuse keys (import them once, at module level) instead of creating one per request.`,
      );
    }
    const h = this.#next++;
    this.#keys.set(h, key);
    this.#refs.set(h, { n: 1, id });
    if (id !== undefined) this.#imported.set(id, h);
    return describe(h, key);
  }

  /** The key a handle names; throws if it names none of this isolate's keys. */
  get(h: unknown): HostKey {
    const key = typeof h === "number" ? this.#keys.get(h) : undefined;
    if (!key)
      throw new BridgeError(
        "InvalidAccessError",
        "The key is not a CryptoKey of this function (or it was released).",
      );
    return key;
  }

  /** Forgets a key (its in-isolate CryptoKey was garbage-collected). */
  release(h: unknown): void {
    if (typeof h !== "number") return;
    const ref = this.#refs.get(h);
    if (!ref || --ref.n > 0) return;
    this.#refs.delete(h);
    this.#keys.delete(h);
    if (ref.id !== undefined) this.#imported.delete(ref.id);
  }

  /** Forgets every key (the isolate is gone). */
  clear(): void {
    this.#keys.clear();
    this.#imported.clear();
    this.#refs.clear();
  }
}

function describe(h: number, key: HostKey): KeyInfo {
  return {
    h,
    type: key.type,
    extractable: key.extractable,
    algorithm: plainAlgorithm(key.algorithm),
    usages: [...key.usages],
  };
}

/** What identifies an import: a digest of its checked arguments (bytes included). */
function importId(args: unknown[]): string {
  const hash = createHash("sha256");
  const walk = (v: unknown): void => {
    if (v instanceof Uint8Array) {
      hash.update(`b${v.byteLength}:`).update(v);
    } else if (v instanceof HostCryptoKey) {
      throw new Error("not reusable"); // never: imports take no keys
    } else if (v && typeof v === "object") {
      const entries = Array.isArray(v)
        ? v.map((x, i) => [String(i), x] as const)
        : Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1));
      hash.update(Array.isArray(v) ? "[" : "{");
      for (const [k, x] of entries) {
        hash.update(`${k.length}:${k}=`);
        walk(x);
      }
      hash.update("}");
    } else hash.update(`${typeof v}:${String(v).length}:${String(v)};`);
  };
  walk(args);
  return hash.digest("base64");
}

function plainAlgorithm(a: webcrypto.KeyAlgorithm): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a)) {
    if (k === "hash" && v && typeof v === "object")
      out.hash = { name: String((v as { name: unknown }).name) };
    else if (v instanceof Uint8Array) out[k] = new Uint8Array(v);
    else if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") out[k] = v;
  }
  return out;
}

// ---- checking what crosses ----
const FORMATS = new Set(["raw", "jwk", "spki", "pkcs8"]);
const USAGES = new Set([
  "encrypt",
  "decrypt",
  "sign",
  "verify",
  "deriveKey",
  "deriveBits",
  "wrapKey",
  "unwrapKey",
]);
const BYTE_FIELDS = ["iv", "counter", "additionalData", "salt", "info", "label", "publicExponent", "context"];
const INT_FIELDS = ["length", "tagLength", "saltLength", "modulusLength", "iterations"];
const JWK_STRINGS = ["kty", "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi", "k", "alg", "use"];

function str(v: unknown, what: string, max = 64): string {
  if (typeof v !== "string" || v.length > max)
    throw new TypeError(`${what} must be a string of at most ${max} characters.`);
  return v;
}

function bytes(v: unknown, what: string, max: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a BufferSource.`);
  if (v.byteLength > max) throw new BridgeError("QuotaExceededError", `${what} is larger than ${max} bytes.`);
  return v;
}

function bool(v: unknown): boolean {
  return v === true;
}

function usages(v: unknown): webcrypto.KeyUsage[] {
  if (!Array.isArray(v) || v.length > 8) throw new TypeError("keyUsages must be a list of key usages.");
  for (const u of v) {
    if (typeof u !== "string" || !USAGES.has(u))
      throw new TypeError(`Unknown key usage ${JSON.stringify(String(u)).slice(0, 40)}.`);
  }
  return v as webcrypto.KeyUsage[];
}

function format(v: unknown): "raw" | "jwk" | "spki" | "pkcs8" {
  if (typeof v !== "string" || !FORMATS.has(v))
    throw new TypeError(`Unknown key format ${JSON.stringify(String(v)).slice(0, 40)}.`);
  return v as "raw" | "jwk" | "spki" | "pkcs8";
}

/** An algorithm identifier with only the fields Web Crypto defines, of the right types. */
function algorithm(v: unknown, table: KeyTable): webcrypto.AlgorithmIdentifier & Record<string, unknown> {
  if (typeof v === "string") return { name: str(v, "The algorithm name") };
  if (!v || typeof v !== "object")
    throw new TypeError("The algorithm must be a name or an object with a name.");
  const a = v as Record<string, unknown>;
  const out: Record<string, unknown> & { name: string } = { name: str(a.name, "algorithm.name") };
  if (a.hash !== undefined) {
    const h = typeof a.hash === "object" && a.hash ? (a.hash as { name?: unknown }).name : a.hash;
    out.hash = { name: str(h, "algorithm.hash") };
  }
  if (a.namedCurve !== undefined) out.namedCurve = str(a.namedCurve, "algorithm.namedCurve");
  for (const f of INT_FIELDS) {
    const n = a[f];
    if (n === undefined || n === null) continue;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 2 ** 31)
      throw new TypeError(`algorithm.${f} must be a non-negative integer.`);
    out[f] = n;
  }
  for (const f of BYTE_FIELDS) if (a[f] !== undefined) out[f] = bytes(a[f], `algorithm.${f}`, 1 << 20);
  if (a.public !== undefined) out.public = table.get((a.public as { $key?: unknown } | null)?.$key);
  if (typeof out.modulusLength === "number" && out.modulusLength > MAX_MODULUS)
    throw new BridgeError(
      "NotSupportedError",
      `RSA keys larger than ${MAX_MODULUS} bits cannot be generated here.`,
    );
  if (typeof out.iterations === "number" && out.iterations > MAX_ITERATIONS)
    throw new BridgeError(
      "NotSupportedError",
      `PBKDF2 with more than ${MAX_ITERATIONS} iterations is not supported (as on Workers).`,
    );
  return out;
}

function jwk(v: unknown): webcrypto.JsonWebKey {
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new TypeError("A JWK must be an object.");
  const j = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of JWK_STRINGS) if (j[f] !== undefined) out[f] = str(j[f], `jwk.${f}`, 16384);
  if (j.ext !== undefined) out.ext = Boolean(j.ext);
  if (j.key_ops !== undefined) out.key_ops = usages(j.key_ops);
  return out as webcrypto.JsonWebKey;
}

function keyData(fmt: string, v: unknown, max: number): webcrypto.JsonWebKey | Uint8Array {
  return fmt === "jwk" ? jwk(v) : bytes(v, "keyData", max);
}

// ---- results ----
function toIsolate(table: KeyTable, v: unknown): unknown {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (v instanceof HostCryptoKey) return table.add(v as HostKey);
  if (typeof v === "boolean") return v;
  if (v && typeof v === "object" && "privateKey" in v && "publicKey" in v) {
    const pair = v as webcrypto.CryptoKeyPair;
    return { publicKey: table.add(pair.publicKey), privateKey: table.add(pair.privateKey) };
  }
  if (v && typeof v === "object") return JSON.parse(JSON.stringify(v)); // an exported JWK
  throw new Error("unexpected webcrypto result");
}

const ERROR_NAMES = new Set([
  "TypeError",
  "RangeError",
  "SyntaxError",
  "NotSupportedError",
  "InvalidAccessError",
  "DataError",
  "OperationError",
  "QuotaExceededError",
  "InvalidStateError",
]);

function failure(err: unknown): SubtleResult {
  const e = err as { name?: unknown; message?: unknown; code?: unknown };
  let name = typeof e?.name === "string" && ERROR_NAMES.has(e.name) ? e.name : "OperationError";
  // Node reports bad argument types as its own ERR_INVALID_ARG_* TypeErrors.
  if (typeof e?.code === "string" && e.code.startsWith("ERR_INVALID_ARG")) name = "TypeError";
  const message = typeof e?.message === "string" ? e.message.slice(0, 500) : "The operation failed.";
  return { ok: false, name, message };
}

/**
 * Runs one `crypto.subtle` call of an isolate: `op` is the method name, `args` its arguments
 * as the in-isolate runtime encoded them (keys as handles, buffers as Uint8Array copies).
 * Never throws; a failure comes back as `{ ok: false, name, message }`.
 */
export async function subtleCall(table: KeyTable, op: unknown, args: unknown): Promise<SubtleResult> {
  if (table.inFlight >= table.limits.maxInFlight) {
    return {
      ok: false,
      name: "QuotaExceededError",
      message: `More than ${table.limits.maxInFlight} crypto.subtle operations at once; await some before starting more.`,
    };
  }
  table.inFlight++;
  try {
    if (!Array.isArray(args) || args.length > 8) throw new TypeError("bad arguments");
    const s = webcrypto.subtle;
    const max = table.limits.maxData;
    const a = args as unknown[];
    let value: unknown;
    switch (op) {
      case "digest":
        value = await s.digest(algorithm(a[0], table), bytes(a[1], "data", max));
        break;
      case "encrypt":
      case "decrypt":
        value = await s[op](algorithm(a[0], table), table.get(a[1]), bytes(a[2], "data", max));
        break;
      case "sign":
        value = await s.sign(algorithm(a[0], table), table.get(a[1]), bytes(a[2], "data", max));
        break;
      case "verify":
        value = await s.verify(
          algorithm(a[0], table),
          table.get(a[1]),
          bytes(a[2], "signature", 1 << 16),
          bytes(a[3], "data", max),
        );
        break;
      case "generateKey":
        value = await s.generateKey(algorithm(a[0], table) as never, bool(a[1]), usages(a[2]));
        break;
      case "importKey": {
        const fmt = format(a[0]);
        const checked = [
          fmt,
          keyData(fmt, a[1], 1 << 20),
          algorithm(a[2], table),
          bool(a[3]),
          usages(a[4]),
        ] as const;
        const id = importId([...checked]);
        const known = table.reuse(id);
        if (known) return { ok: true, value: known };
        const key = await s.importKey(
          checked[0] as "raw",
          checked[1] as Uint8Array,
          checked[2],
          checked[3],
          checked[4],
        );
        return { ok: true, value: table.add(key, id) };
      }
      case "exportKey":
        value = await s.exportKey(format(a[0]) as "raw", table.get(a[1]));
        break;
      case "deriveBits": {
        const length = a[2] === null || a[2] === undefined ? null : a[2];
        if (
          length !== null &&
          (typeof length !== "number" || !Number.isInteger(length) || length < 0 || length > 1 << 16)
        )
          throw new TypeError("length must be a number of bits.");
        value = await s.deriveBits(algorithm(a[0], table) as never, table.get(a[1]), length as number);
        break;
      }
      case "deriveKey":
        value = await s.deriveKey(
          algorithm(a[0], table) as never,
          table.get(a[1]),
          algorithm(a[2], table) as never,
          bool(a[3]),
          usages(a[4]),
        );
        break;
      case "wrapKey":
        value = await s.wrapKey(format(a[0]), table.get(a[1]), table.get(a[2]), algorithm(a[3], table));
        break;
      case "unwrapKey":
        value = await s.unwrapKey(
          format(a[0]),
          bytes(a[1], "wrappedKey", 1 << 20),
          table.get(a[2]),
          algorithm(a[3], table),
          algorithm(a[4], table),
          bool(a[5]),
          usages(a[6]),
        );
        break;
      default:
        throw new BridgeError(
          "NotSupportedError",
          `crypto.subtle.${String(op).slice(0, 40)} is not supported.`,
        );
    }
    return { ok: true, value: toIsolate(table, value) };
  } catch (err) {
    return failure(err);
  } finally {
    table.inFlight--;
  }
}
