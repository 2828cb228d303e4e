/** Unit tests of the host side of Web Crypto: what crosses from an isolate is checked. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KeyTable, subtleCall } from "./crypto-bridge.ts";

const rawKey = (table: KeyTable, seed = 0) =>
  subtleCall(table, "importKey", [
    "raw",
    new Uint8Array(16).fill(seed),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  ]);
const handle = (r: unknown) => (r as { value: { h: number } }).value.h;

describe("crypto bridge", () => {
  it("runs an operation and hands back a key description, never a host object", async () => {
    const t = new KeyTable();
    const r = await rawKey(t);
    assert.equal(r.ok, true);
    const info = (r as { value: Record<string, unknown> }).value;
    assert.deepEqual(Object.keys(info).sort(), ["algorithm", "extractable", "h", "type", "usages"]);
    assert.deepEqual(info.algorithm, { name: "HMAC", length: 128, hash: { name: "SHA-256" } });
    const sig = await subtleCall(t, "sign", ["HMAC", info.h, new Uint8Array(3)]);
    assert.ok(sig.ok && (sig.value as Uint8Array).byteLength === 32);
  });

  it("a handle of another isolate's table, or a released one, names no key", async () => {
    const a = new KeyTable();
    const b = new KeyTable();
    const h = ((await rawKey(a)) as { value: { h: number } }).value.h;
    const r = await subtleCall(b, "sign", ["HMAC", h, new Uint8Array(1)]);
    assert.deepEqual([r.ok, !r.ok && r.name], [false, "InvalidAccessError"]);
    a.release(h);
    const gone = await subtleCall(a, "sign", ["HMAC", h, new Uint8Array(1)]);
    assert.equal(!gone.ok && gone.name, "InvalidAccessError");
  });

  it("the key table has a cap, and clear() empties it", async () => {
    const t = new KeyTable({ maxKeys: 3, maxInFlight: 64, maxData: 1 << 20 });
    for (let i = 0; i < 3; i++) assert.equal((await rawKey(t, i)).ok, true);
    const r = await rawKey(t, 3);
    assert.equal(!r.ok && r.name, "QuotaExceededError");
    assert.match(!r.ok ? r.message : "", /NIMBUS_CRYPTO_KEY_LIMIT/);
    t.clear();
    assert.equal(t.size, 0);
    assert.equal((await rawKey(t)).ok, true);
  });

  it("importing the same key again shares one entry until every CryptoKey of it is released", async () => {
    const t = new KeyTable();
    const a = handle(await rawKey(t, 1));
    const b = handle(await rawKey(t, 1));
    const c = handle(await rawKey(t, 2));
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.equal(t.size, 2);
    t.release(a);
    assert.equal((await subtleCall(t, "sign", ["HMAC", b, new Uint8Array(1)])).ok, true, "still shared");
    t.release(b);
    assert.equal(t.size, 1);
    const d = handle(await rawKey(t, 1));
    assert.notEqual(d, a, "a released import is imported afresh");
  });

  it("operations in flight per isolate are bounded", async () => {
    const t = new KeyTable({ maxKeys: 10, maxInFlight: 2, maxData: 1 << 20 });
    const calls = [1, 2, 3].map(() => subtleCall(t, "digest", ["SHA-256", new Uint8Array(8)]));
    const results = await Promise.all(calls);
    assert.deepEqual(
      results.map((r) => r.ok || r.name),
      [true, true, "QuotaExceededError"],
    );
    assert.equal(t.inFlight, 0);
  });

  it("expensive parameters are bounded as on Workers", async () => {
    const t = new KeyTable();
    const rsa = await subtleCall(t, "generateKey", [
      { name: "RSA-PSS", modulusLength: 16384, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      false,
      ["sign", "verify"],
    ]);
    assert.equal(!rsa.ok && rsa.name, "NotSupportedError");
    const pw = (
      (await subtleCall(t, "importKey", ["raw", new Uint8Array(8), "PBKDF2", false, ["deriveBits"]])) as {
        value: { h: number };
      }
    ).value.h;
    const slow = await subtleCall(t, "deriveBits", [
      { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(8), iterations: 10_000_000 },
      pw,
      256,
    ]);
    assert.equal(!slow.ok && slow.name, "NotSupportedError");
    const big = await subtleCall(new KeyTable({ maxKeys: 1, maxInFlight: 1, maxData: 16 }), "digest", [
      "SHA-256",
      new Uint8Array(17),
    ]);
    assert.equal(!big.ok && big.name, "QuotaExceededError");
  });

  it("malformed arguments are refused before webcrypto sees them", async () => {
    const t = new KeyTable();
    const cases: [unknown, unknown][] = [
      ["digest", "not a list"],
      ["digest", [{ name: { toString: () => "SHA-256" } }, new Uint8Array(1)]],
      ["digest", ["SHA-256", [1, 2, 3]]],
      ["importKey", ["pem", new Uint8Array(1), "HMAC", false, ["sign"]]],
      ["importKey", ["raw", new Uint8Array(1), { name: "HMAC", hash: "SHA-256" }, false, ["fly"]]],
      ["importKey", ["jwk", { kty: "oct", k: 5 }, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]]],
      ["deriveBits", [{ name: "ECDH", public: { $key: 999 } }, 1, 256]],
      ["constructor", []],
      ["__proto__", []],
    ];
    for (const [op, args] of cases) {
      const r = await subtleCall(t, op, args);
      assert.equal(r.ok, false, `${String(op)} ${JSON.stringify(args)} must fail`);
    }
    assert.equal(t.size, 0);
  });
});
