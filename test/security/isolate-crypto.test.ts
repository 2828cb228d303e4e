/**
 * Web Crypto on the isolate executor as an attack surface: keys live on the host, so a
 * function must not be able to grow the host's key table without bound, hold the host's
 * thread pool with expensive operations, or use a key it was never given.
 */
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type RunningServer, startServer } from "../../src/server.ts";
import { cleanup, deployIsolateSource } from "../helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "nimbus-isocrypto-"));

const HOARDER = `const kept: CryptoKey[] = [];
export default {
  async fetch(request: Request) {
    const keep = new URL(request.url).searchParams.get("keep") === "1";
    const n = Number(new URL(request.url).searchParams.get("n"));
    try {
      for (let i = 0; i < n; i++) {
        const raw = keep ? new Uint8Array(new Uint32Array([i, 1, 2, 3]).buffer) : new Uint8Array(16);
        const k = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
        if (keep) kept.push(k);
      }
      return new Response("made " + n);
    } catch (e) {
      return new Response((e as Error).name + ": " + (e as Error).message, { status: 500 });
    }
  },
};`;

const GREEDY = `export default {
  async fetch() {
    const out: string[] = [];
    const tryIt = async (p: Promise<unknown>) => { try { await p; out.push("ok"); } catch (e) { out.push((e as Error).name); } };
    await tryIt(crypto.subtle.generateKey({ name: "RSA-PSS", modulusLength: 16384, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, false, ["sign"]));
    const pw = await crypto.subtle.importKey("raw", new Uint8Array(8), "PBKDF2", false, ["deriveBits"]);
    await tryIt(crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(8), iterations: 1e9 }, pw, 256));
    const many = await Promise.allSettled(Array.from({ length: 300 }, () => crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(8), iterations: 100000 }, pw, 256)));
    out.push(many.some((r) => r.status === "rejected" && (r.reason as Error).name === "QuotaExceededError") ? "bounded" : "unbounded");
    // A look-alike object is not a key.
    await tryIt(crypto.subtle.sign("HMAC", Object.create(CryptoKey.prototype), new Uint8Array(1)));
    return Response.json(out);
  },
};`;

const NEIGHBOUR = `export default { fetch: () => new Response("still here") };`;

describe("isolate Web Crypto abuse", () => {
  let s: RunningServer;
  before(async () => {
    s = await startServer({ dataDir: join(dir, "data"), port: 0, prewarm: 1, log: () => {} });
    for (const [name, src] of [
      ["hoarder", HOARDER],
      ["minter", HOARDER],
      ["greedy", GREEDY],
      ["neighbour", NEIGHBOUR],
    ] as const) {
      const r = await deployIsolateSource(s, dir, name, src);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  });
  after(async () => {
    await s?.close();
    cleanup(dir);
  });

  it("attack: a function holds CryptoKeys without bound → QuotaExceededError at 10,000 keys", async () => {
    const r = await fetch(`${s.url}/fn/hoarder?keep=1&n=10001`);
    assert.equal(r.status, 500);
    assert.match(await r.text(), /^QuotaExceededError: NIMBUS_CRYPTO_KEY_LIMIT/);
    const n = await fetch(`${s.url}/fn/neighbour`);
    assert.equal(await n.text(), "still here");
  });

  it("attack: a function imports the same key 25,000 times → one host key, no growth", async () => {
    const r = await fetch(`${s.url}/fn/minter?n=25000`);
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(await r.text(), "made 25000");
  });

  it("attack: a function asks for 16384-bit RSA, 1e9 PBKDF2 rounds, 300 slow ops at once → refused or bounded", async () => {
    const r = await fetch(`${s.url}/fn/greedy`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), ["NotSupportedError", "NotSupportedError", "bounded", "TypeError"]);
    const n = await fetch(`${s.url}/fn/neighbour`);
    assert.equal(await n.text(), "still here");
  });
});
