/**
 * `crypto.subtle` inside the isolate: a thin front for the host's Web Crypto. Arguments are
 * copied into plain values (buffers as Uint8Array copies, keys as their handle), one bridge
 * call runs the operation on the host (src/runtime/isolate/crypto-bridge.ts), and the
 * answer comes back as bytes, a boolean, a JWK, or the description of new keys, which
 * become opaque CryptoKey objects here. Key material stays on the host; a CryptoKey that is
 * garbage-collected releases its host key.
 */
import { DOMExceptionLike } from "./encoding.ts";

/** The host's answer to one call. */
export type SubtleResult = { ok: true; value: unknown } | { ok: false; name: string; message: string };
/** One crossing to the host: operation name and encoded arguments. */
export type SubtleCall = (op: string, args: unknown[]) => Promise<SubtleResult>;

interface KeyInfo {
  h: number;
  type: string;
  extractable: boolean;
  algorithm: Record<string, unknown>;
  usages: string[];
}

let call: SubtleCall | undefined;
let release: ((h: number) => void) | undefined;
let registry: FinalizationRegistry<number> | undefined;

/** Wires the host bridge in (once per isolate, after the snapshot). */
export function setSubtleBridge(c: SubtleCall, r: (h: number) => void): void {
  call = c;
  release = r;
}

const HANDLE = new WeakMap<object, number>();
const SECRET = Symbol("CryptoKey");

/** An opaque key: its material lives on the host, indexed by a handle only this runtime sees. */
export class CryptoKey {
  readonly type!: string;
  readonly extractable!: boolean;
  readonly algorithm!: Record<string, unknown>;
  readonly usages!: string[];
  constructor(secret?: symbol, info?: KeyInfo) {
    if (secret !== SECRET || !info) throw new TypeError("Illegal constructor");
    Object.defineProperties(this, {
      type: { value: info.type, enumerable: true },
      extractable: { value: info.extractable, enumerable: true },
      algorithm: { value: Object.freeze(info.algorithm), enumerable: true },
      usages: { value: Object.freeze([...info.usages]), enumerable: true },
    });
    HANDLE.set(this, info.h);
    // Created lazily: the prelude's top level runs while the startup snapshot is made.
    registry ??= new FinalizationRegistry((h) => release?.(h));
    registry.register(this, info.h);
  }
}
Object.defineProperty(CryptoKey.prototype, Symbol.toStringTag, { value: "CryptoKey", configurable: true });

function handleOf(key: unknown): number {
  const h = key !== null && typeof key === "object" ? HANDLE.get(key) : undefined;
  if (h === undefined) throw new TypeError("The key must be a CryptoKey.");
  return h;
}

function bytesOf(data: unknown, what = "data"): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  if (ArrayBuffer.isView(data))
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  throw new TypeError(`The ${what} must be an ArrayBuffer or an ArrayBufferView.`);
}

const BYTE_FIELDS = ["iv", "counter", "additionalData", "salt", "info", "label", "publicExponent", "context"];

/** An algorithm identifier as plain values (what can cross to the host). */
function algorithm(alg: unknown): unknown {
  if (typeof alg === "string") return alg;
  if (alg === null || typeof alg !== "object")
    throw new TypeError("The algorithm must be a string or an object.");
  const a = alg as Record<string, unknown>;
  const out: Record<string, unknown> = { name: String(a.name) };
  if (a.hash !== undefined)
    out.hash = typeof a.hash === "string" ? a.hash : String((a.hash as { name?: unknown })?.name);
  for (const f of ["namedCurve"]) if (a[f] !== undefined) out[f] = String(a[f]);
  for (const f of ["length", "tagLength", "saltLength", "modulusLength", "iterations"]) {
    if (a[f] !== undefined) out[f] = Number(a[f]);
  }
  for (const f of BYTE_FIELDS) if (a[f] !== undefined) out[f] = bytesOf(a[f], `algorithm.${f}`);
  if (a.public !== undefined) out.public = { $key: handleOf(a.public) };
  return out;
}

function keyData(format: unknown, data: unknown): unknown {
  if (format !== "jwk") return bytesOf(data, "keyData");
  if (data === null || typeof data !== "object") throw new TypeError("A JWK must be an object.");
  const j = data as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(j)) {
    if (typeof v === "string" || typeof v === "boolean") out[k] = v;
    else if (k === "key_ops" && Array.isArray(v)) out[k] = v.map(String);
  }
  return out;
}

function usages(u: unknown): string[] {
  if (u === null || typeof u !== "object" || typeof (u as Iterable<unknown>)[Symbol.iterator] !== "function")
    throw new TypeError("keyUsages must be a sequence of strings.");
  return [...(u as Iterable<unknown>)].map(String);
}

function toKey(info: unknown): CryptoKey {
  return new CryptoKey(SECRET, info as KeyInfo);
}

async function run(op: string, args: unknown[]): Promise<unknown> {
  if (!call) throw new DOMExceptionLike("crypto.subtle is not available yet.", "InvalidStateError");
  const r = await call(op, args);
  if (!r.ok) {
    if (r.name === "TypeError") throw new TypeError(r.message);
    if (r.name === "RangeError") throw new RangeError(r.message);
    throw new DOMExceptionLike(r.message, r.name);
  }
  return r.value;
}

function buffer(v: unknown): ArrayBuffer {
  const u = v as Uint8Array;
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

/** Web Crypto's SubtleCrypto, each method one crossing to the host. */
export class SubtleCrypto {
  constructor(secret?: symbol) {
    if (secret !== SECRET) throw new TypeError("Illegal constructor");
  }
  async digest(alg: unknown, data: unknown): Promise<ArrayBuffer> {
    return buffer(await run("digest", [algorithm(alg), bytesOf(data)]));
  }
  async encrypt(alg: unknown, key: unknown, data: unknown): Promise<ArrayBuffer> {
    return buffer(await run("encrypt", [algorithm(alg), handleOf(key), bytesOf(data)]));
  }
  async decrypt(alg: unknown, key: unknown, data: unknown): Promise<ArrayBuffer> {
    return buffer(await run("decrypt", [algorithm(alg), handleOf(key), bytesOf(data)]));
  }
  async sign(alg: unknown, key: unknown, data: unknown): Promise<ArrayBuffer> {
    return buffer(await run("sign", [algorithm(alg), handleOf(key), bytesOf(data)]));
  }
  async verify(alg: unknown, key: unknown, signature: unknown, data: unknown): Promise<boolean> {
    return (await run("verify", [
      algorithm(alg),
      handleOf(key),
      bytesOf(signature, "signature"),
      bytesOf(data),
    ])) as boolean;
  }
  async generateKey(alg: unknown, extractable: unknown, keyUsages: unknown): Promise<unknown> {
    const r = (await run("generateKey", [algorithm(alg), Boolean(extractable), usages(keyUsages)])) as {
      h?: number;
      publicKey?: KeyInfo;
      privateKey?: KeyInfo;
    };
    if (r.h !== undefined) return toKey(r);
    return { publicKey: toKey(r.publicKey), privateKey: toKey(r.privateKey) };
  }
  async importKey(
    format: unknown,
    data: unknown,
    alg: unknown,
    extractable: unknown,
    keyUsages: unknown,
  ): Promise<CryptoKey> {
    const f = String(format);
    return toKey(
      await run("importKey", [f, keyData(f, data), algorithm(alg), Boolean(extractable), usages(keyUsages)]),
    );
  }
  async exportKey(format: unknown, key: unknown): Promise<unknown> {
    const f = String(format);
    const v = await run("exportKey", [f, handleOf(key)]);
    return f === "jwk" ? v : buffer(v);
  }
  async deriveBits(alg: unknown, key: unknown, length?: unknown): Promise<ArrayBuffer> {
    const len = length === undefined || length === null ? null : Number(length);
    return buffer(await run("deriveBits", [algorithm(alg), handleOf(key), len]));
  }
  async deriveKey(
    alg: unknown,
    key: unknown,
    derived: unknown,
    extractable: unknown,
    keyUsages: unknown,
  ): Promise<CryptoKey> {
    return toKey(
      await run("deriveKey", [
        algorithm(alg),
        handleOf(key),
        algorithm(derived),
        Boolean(extractable),
        usages(keyUsages),
      ]),
    );
  }
  async wrapKey(format: unknown, key: unknown, wrappingKey: unknown, alg: unknown): Promise<ArrayBuffer> {
    return buffer(
      await run("wrapKey", [String(format), handleOf(key), handleOf(wrappingKey), algorithm(alg)]),
    );
  }
  async unwrapKey(
    format: unknown,
    wrapped: unknown,
    unwrappingKey: unknown,
    unwrapAlg: unknown,
    keyAlg: unknown,
    extractable: unknown,
    keyUsages: unknown,
  ): Promise<CryptoKey> {
    return toKey(
      await run("unwrapKey", [
        String(format),
        bytesOf(wrapped, "wrappedKey"),
        handleOf(unwrappingKey),
        algorithm(unwrapAlg),
        algorithm(keyAlg),
        Boolean(extractable),
        usages(keyUsages),
      ]),
    );
  }
}
Object.defineProperty(SubtleCrypto.prototype, Symbol.toStringTag, {
  value: "SubtleCrypto",
  configurable: true,
});

/** The one `crypto.subtle` of the isolate. */
export const subtle = new SubtleCrypto(SECRET);
